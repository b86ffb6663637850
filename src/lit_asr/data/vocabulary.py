"""Token inventory: text <-> ids for CTC.

File format (``vocabulary.txt``): one token per line, UTF-8. Line 0 is ``<blank>`` (the CTC blank, id 0),
line 1 is ``<unk>`` (characters never seen in training), then the characters of the training transcripts by
descending frequency. A space is written as ``<space>``.

MASR's character vocabularies (``token<TAB>count`` lines, ``<blank>`` and ``<unk>`` first) are read as they are.
MASR 3's sentencepiece vocabularies (``<eos>`` as the third token, pieces marked with ``▁``) are refused with the
command that rebuilds a lit-asr dataset from MASR's manifests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lit_asr.errors import LitAsrError

BLANK = "<blank>"
UNK = "<unk>"
SPACE = "<space>"
MASR_EOS = "<eos>"  # MASR 3 (sentencepiece) reserves id 2 for it
PIECE_MARK = "\u2581"  # sentencepiece's word-start mark "▁"


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
        """Read a vocabulary file written by :meth:`save`, or a MASR character vocabulary."""
        path = Path(path)
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not found"
            raise LitAsrError(f"vocabulary file {what}: {path} (run scripts/prepare_data.py first)")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise LitAsrError(f"vocabulary file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        # MASR writes "token<TAB>count" (or "<TAB>score"); the token is the first field either way.
        tokens = [SPACE if t == " " else t for t in (line.split("\t")[0] for line in lines) if t]
        if len(tokens) > 2 and tokens[:3] == [BLANK, UNK, MASR_EOS] or any(t.startswith(PIECE_MARK) for t in tokens):
            raise LitAsrError(
                f"{path} is a MASR 3 sentencepiece vocabulary (<eos>, ▁-marked pieces), which lit-asr's character "
                "vocabulary cannot encode with: rebuild the dataset folder from MASR's manifests with "
                "`python scripts/prepare_data.py masr --train-manifest M.train --test-manifest M.test`")
        return cls(tokens)

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
