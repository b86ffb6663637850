"""Subword tokenizers (sentencepiece BPE or unigram) behind the same interface as the character vocabulary.

Mixed Chinese-English text keeps one token per CJK character and pieces for Latin words: before sentencepiece
sees a text, every CJK character is made a word of its own (``space_cjk``), and sentencepiece never merges across
words. The model file (``tokenizer.model``) is the whole tokenizer; a checkpoint carries it (base64), so eval,
infer, export and serve need no file beside the checkpoint.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path

from lit_asr.data.text import space_cjk
from lit_asr.data.vocabulary import BLANK, UNK, Vocabulary
from lit_asr.errors import LitAsrError, first_line

TOKENIZER_TYPES = ("char", "bpe", "unigram")


def _processor(model: bytes):
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, OSError) as exc:
        raise LitAsrError(f"not a sentencepiece model: {first_line(exc)}") from None


class SentencePieceVocabulary(Vocabulary):
    """Sentencepiece pieces as CTC tokens: id 0 ``<blank>``, id 1 ``<unk>``, then pieces (``▁`` marks a word start)."""

    def __init__(self, model: bytes):
        self.sp = _processor(model)
        self.model = model
        super().__init__([self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())])

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceVocabulary":
        """Read ``tokenizer.model`` written by ``prepare_data.py --tokenizer bpe|unigram``."""
        path = Path(path)
        if not path.is_file():
            raise LitAsrError(f"tokenizer model not found: {path} (run scripts/prepare_data.py --tokenizer bpe)")
        try:
            return cls(path.read_bytes())
        except LitAsrError as exc:
            raise LitAsrError(f"{path}: {exc}") from None

    @classmethod
    def train(cls, texts: Iterable[str], model_type: str, vocab_size: int) -> "SentencePieceVocabulary":
        """Train on normalised texts; ``vocab_size`` is an upper bound (a small corpus may give fewer pieces)."""
        import sentencepiece as spm

        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(space_cjk(t) for t in texts if t), model_writer=buffer, model_type=model_type,
                vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=1.0, pad_id=0, pad_piece=BLANK,
                unk_id=1, unk_piece=UNK, bos_id=-1, eos_id=-1, minloglevel=2)
        except RuntimeError as exc:
            raise LitAsrError(f"sentencepiece could not train a {model_type} tokenizer: {first_line(exc)}") from None
        return cls(buffer.getvalue())

    def save(self, path: str | Path) -> None:
        """Write the sentencepiece model file."""
        Path(path).write_bytes(self.model)

    def __contains__(self, char: str) -> bool:
        return self.count_unknown(char) == 0

    def encode(self, text: str) -> list[int]:
        """Piece ids of normalised text (CJK characters one piece each)."""
        return self.sp.encode(space_cjk(text), out_type=int)

    def count_unknown(self, text: str) -> int:
        """How many pieces of ``text`` are unknown."""
        return sum(1 for i in self.encode(text) if i == self.unk_id)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of piece ids (blank and ``<unk>`` dropped); spaces next to CJK characters are left to the normaliser."""
        return self.sp.decode([int(i) for i in ids if int(i) not in (self.blank_id, self.unk_id)])

    def labels(self) -> list[str]:
        """Pieces as pyctcdecode's BPE mode wants them: ``▁`` starts a word, blank is ''."""
        return ["" if t == BLANK else t for t in self.tokens]


def load_vocabulary(path: str | Path, tokenizer: str | None = None) -> Vocabulary:
    """A sentencepiece ``*.model`` or a character ``vocabulary.txt`` (ours or MASR's), checked against ``tokenizer``."""
    subword = Path(path).suffix == ".model"
    if tokenizer is not None and subword != (tokenizer != "char"):
        raise LitAsrError(f"dataset_vocab {path} is {'a sentencepiece model' if subword else 'a character vocabulary'}"
                          f" but tokenizer={tokenizer}: set tokenizer={'bpe' if subword else 'char'} or point "
                          "dataset_vocab at the matching file")
    return SentencePieceVocabulary.load(path) if subword else Vocabulary.load(path)


def tokenizer_model(vocabulary: Vocabulary) -> str | None:
    """What a checkpoint stores to rebuild a subword vocabulary (base64 model), None for characters."""
    return base64.b64encode(vocabulary.model).decode("ascii") if isinstance(vocabulary, SentencePieceVocabulary) \
        else None


def vocabulary_from_checkpoint(tokens: list[str], model: str | None) -> Vocabulary:
    """The vocabulary a checkpoint describes: its tokens, and its sentencepiece model when it has one."""
    if model is None:
        return Vocabulary(tokens)
    vocabulary = SentencePieceVocabulary(base64.b64decode(model))
    if vocabulary.tokens != list(tokens):
        raise LitAsrError("the checkpoint's tokens and its tokenizer model disagree")
    return vocabulary
