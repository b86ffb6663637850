"""Token inventory: text <-> ids for CTC.

File format (``vocabulary.txt``): one token per line, UTF-8. Line 0 is ``<blank>`` (the CTC blank, id 0),
line 1 is ``<unk>`` (characters never seen in training), then the characters of the training transcripts by
descending frequency. A space is written as ``<space>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lit_asr.errors import LitAsrError

BLANK = "<blank>"
UNK = "<unk>"
SPACE = "<space>"


class Vocabulary:
    """Maps normalised text to token ids and back; id 0 is the CTC blank."""

    def __init__(self, tokens: list[str]):
        if len(tokens) < 3 or tokens[0] != BLANK or tokens[1] != UNK:
            raise LitAsrError(f"a vocabulary starts with {BLANK} and {UNK} and holds at least one token")
        if len(set(tokens)) != len(tokens):
            raise LitAsrError("the vocabulary lists a token twice")
        self.tokens = list(tokens)
        self._ids = {tok: i for i, tok in enumerate(tokens)}

    blank_id = 0
    unk_id = 1

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, char: str) -> bool:
        return self._to_token(char) in self._ids

    @staticmethod
    def _to_token(char: str) -> str:
        return SPACE if char == " " else char

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Count characters of normalised texts and keep those seen at least ``min_count`` times."""
        counts = Counter(ch for text in texts for ch in text)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([BLANK, UNK] + [cls._to_token(ch) for ch, n in ranked if n >= min_count])

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """Read a vocabulary file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise LitAsrError(f"vocabulary file not found: {path} (run scripts/prepare_data.py first)")
        try:
            tokens = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise LitAsrError(f"vocabulary file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return cls([t for t in tokens if t])

    def save(self, path: str | Path) -> None:
        """Write one token per line."""
        Path(path).write_text("\n".join(self.tokens) + "\n", encoding="utf-8")

    def encode(self, text: str) -> list[int]:
        """Ids of each character of already-normalised text; unknown characters map to ``<unk>``."""
        return [self._ids.get(self._to_token(ch), self.unk_id) for ch in text]

    def count_unknown(self, text: str) -> int:
        """How many characters of ``text`` are not in the vocabulary."""
        return sum(1 for ch in text if self._to_token(ch) not in self._ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids (blank dropped, ``<unk>`` dropped, ``<space>`` as a space)."""
        out = []
        for i in ids:
            tok = self.tokens[int(i)]
            if tok in (BLANK, UNK):
                continue
            out.append(" " if tok == SPACE else tok)
        return "".join(out)

    def labels(self) -> list[str]:
        """Printable label per id, as CTC beam decoders want them (blank as '', space as ' ')."""
        return ["" if t == BLANK else " " if t == SPACE else t for t in self.tokens]
