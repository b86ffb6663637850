"""CTC prefix beam search with an optional KenLM n-gram model, on top of pyctcdecode.

How MASR/DeepSpeech2's decoder settings map onto pyctcdecode:

* ``alpha``/``beta`` are pyctcdecode's: each LM token adds ``alpha * ln p(token | history) + beta``, where
  LM tokens are those of :func:`lit_asr.decoding.lm.tokenize_for_lm` (the ones ``build_lm.py`` counts):
  a CJK character, or a space-separated run of other characters.
* pyctcdecode calls the LM once per *word*, a word ending where a label starts with ``▁`` (its BPE
  word-start mark) or, for ordinary alphabets, at a space. When most labels are CJK characters
  ("character mode") every CJK label gets the ``▁`` so that the LM scores each character as soon as the
  next one starts; other labels (Latin letters, digits, space) continue the current word, and the LM
  wrapper below splits such a word ("用iphone pro") into its LM tokens. Otherwise ("word mode", e.g.
  English) the labels stay as they are and words are space-separated. Sentencepiece pieces already carry
  the ``▁`` (a CJK character is a piece of its own), so a subword vocabulary is BPE mode as it is.
* ``cutoff_prob``/``cutoff_top_n`` keep DeepSpeech2's meaning exactly: per frame only the most probable
  tokens whose cumulative probability stays within ``cutoff_prob``, and at most ``cutoff_top_n`` of them,
  are expanded. pyctcdecode has no such knobs, so the other tokens' log-probabilities are masked before
  decoding. pyctcdecode's own ``token_min_logp`` (config key, default -30) then also drops tokens below that
  natural-log probability; at the default only the mask prunes.
* ``<unk>`` (id 1) becomes a private-use character: it still takes its frames in the search (so a beam
  without LM agrees with greedy decoding), the LM treats it as an unknown word (KenLM's ``<unk>``
  probability plus pyctcdecode's unknown-word offset of -10), and it is removed from the output, as
  :meth:`Vocabulary.decode` drops it.
* pyctcdecode also drops beams scoring more than ``-beam_prune_logp`` (natural log, config key, default -10)
  below the best one, which DeepSpeech2's decoder does not do; it only matters for hopeless beams.
* ``blank_skip_prob``: a run of frames whose blank probability is at least this carries no choice, so it is
  decoded as a single frame (one frame is kept so that "a, blank, a" still reads as two a's). On confident
  speech most frames are such blanks. :func:`skip_blank_frames` returns the kept frames' original indices so
  frame-based timestamps stay right. ``null`` decodes every frame.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path

import numpy as np
from pyctcdecode.alphabet import Alphabet
from pyctcdecode.constants import LOG_BASE_CHANGE_FACTOR
from pyctcdecode.decoder import BeamSearchDecoderCTC
from pyctcdecode.language_model import LanguageModel

from lit_asr.data.text import is_cjk, normalize_text
from lit_asr.decoding.lm import read_arpa_unigrams, tokenize_for_lm
from lit_asr.decoding.worker_pool import PooledDecoder
from lit_asr.errors import LitAsrError, first_line

logger = logging.getLogger(__name__)

UNK_LABEL = "<unk>"
UNK_CHAR = "\ue000"  # private use: never in normalised text, unknown to any LM
WORD_START = "\u2581"  # pyctcdecode's BPE word-start mark "▁"
_MASKED_LOGP = -1e4  # after pyctcdecode's log-softmax and clipping this is ln(1e-15) = -34.5
_KENLM_BINARY_MAGIC = b"mmap lm "


def cutoff_prune(log_probs: np.ndarray, vocab_size: int, cutoff_prob: float, cutoff_top_n: int) -> np.ndarray:
    """Mask (to a very low log-prob) all but the tokens that DeepSpeech2's cutoff_prob/cutoff_top_n expand."""
    lp = np.asarray(log_probs, dtype=np.float32)
    if lp.ndim != 2 or lp.shape[1] != vocab_size:
        raise LitAsrError(f"log-probs must be (frames, {vocab_size}), got {lp.shape}")
    top_n = min(cutoff_top_n, vocab_size)
    if top_n == vocab_size and cutoff_prob >= 1.0:
        return lp
    top = np.argpartition(lp, vocab_size - top_n, axis=1)[:, vocab_size - top_n :]
    top_lp = np.take_along_axis(lp, top, axis=1)
    keep = np.ones_like(top_lp, dtype=bool)
    if cutoff_prob < 1.0:
        order = np.argsort(-top_lp, axis=1)
        top, top_lp = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_lp, order, axis=1)
        p = np.exp(top_lp.astype(np.float64))
        keep = np.cumsum(p, axis=1) - p < cutoff_prob  # DeepSpeech2 includes the token crossing it
    out = np.full_like(lp, _MASKED_LOGP)
    np.put_along_axis(out, top, np.where(keep, top_lp, _MASKED_LOGP), axis=1)
    return out


def skip_blank_frames(log_probs: np.ndarray, blank_prob: float | None, blank_id: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(kept frames, their original indices): every run of frames with blank probability >= ``blank_prob``
    shrinks to its first frame; ``None`` keeps all frames."""
    index = np.arange(len(log_probs))
    if blank_prob is None or not len(log_probs):
        return log_probs, index
    sure_blank = log_probs[:, blank_id] >= np.log(blank_prob)
    keep = ~sure_blank
    keep[1:] |= sure_blank[1:] & ~sure_blank[:-1]
    keep[0] = True
    return log_probs[keep], index[keep]


def is_character_vocabulary(labels: list[str]) -> bool:
    """True when most ordinary labels are CJK characters, so the LM should score characters."""
    ordinary = [lab for lab in labels if lab not in ("", " ", UNK_LABEL)]
    return sum(len(lab) == 1 and is_cjk(lab) for lab in ordinary) * 2 > len(ordinary)


def _decoder_labels(labels: list[str], character_mode: bool) -> list[str]:
    # A bare "▁" for the space would be tidier, but pyctcdecode 0.5 then forces a word break on whichever
    # candidate it expands next, in any beam, splitting English words; a plain space is safe (see _TokenLM).
    out = []
    for lab in labels:
        lab = UNK_CHAR if lab == UNK_LABEL else lab
        if character_mode and (lab == UNK_CHAR or (len(lab) == 1 and is_cjk(lab))):
            lab = WORD_START + lab
        out.append(lab)
    return out


class _TokenLM(LanguageModel):
    """pyctcdecode's KenLM wrapper, scoring a decoder word as the LM tokens tokenize_for_lm makes of it."""

    def score(self, prev_state, word: str, is_last_word: bool = False):
        tokens = tokenize_for_lm(word)
        total, state = 0.0, prev_state
        for i, token in enumerate(tokens):
            token_score, state = super().score(state, token, is_last_word and i == len(tokens) - 1)
            total += token_score
        if is_last_word and not tokens:  # pyctcdecode would score "" as an unknown word here
            total += self.alpha * self._get_raw_end_score(state) * LOG_BASE_CHANGE_FACTOR
        return total, state

    def score_partial_token(self, partial_token: str) -> float:
        # Without unigrams (a binary LM) pyctcdecode would penalise every partial word as unknown; instead
        # check none and let score() find unknown words once they are complete.
        tokens = tokenize_for_lm(partial_token)
        return super().score_partial_token(tokens[-1]) if tokens and self._char_trie is not None else 0.0


class BeamSearchDecoder(PooledDecoder):
    """Batch CTC beam search with KenLM shallow fusion (pyctcdecode), optionally in a process pool."""

    def __init__(
        self,
        labels: list[str],
        lang_model_path: str | None,
        alpha: float,
        beta: float,
        beam_size: int,
        cutoff_prob: float,
        cutoff_top_n: int,
        num_proc_bsearch: int,
        unigrams: list[str] | None = None,
        hotwords: list[str] | None = None,
        hotword_weight: float = 3.0,
        beam_prune_logp: float = -10.0,
        token_min_logp: float = -30.0,
        blank_skip_prob: float | None = None,
    ):
        if beam_size < 1 or cutoff_top_n < 1 or num_proc_bsearch < 1:
            raise LitAsrError("beam_size, cutoff_top_n and num_proc_bsearch must be at least 1")
        if not 0.0 < cutoff_prob <= 1.0:
            raise LitAsrError(f"cutoff_prob must be in (0, 1], got {cutoff_prob}")
        if beam_prune_logp >= 0 or token_min_logp >= 0:
            raise LitAsrError("beam_prune_logp and token_min_logp are natural-log thresholds and must be negative")
        if blank_skip_prob is not None and not 0.0 < blank_skip_prob <= 1.0:
            raise LitAsrError(f"blank_skip_prob must be in (0, 1] or null, got {blank_skip_prob}")
        self.beam_prune_logp, self.token_min_logp = float(beam_prune_logp), float(token_min_logp)
        self.blank_skip_prob = blank_skip_prob
        self.labels = list(labels)
        self.beam_size = beam_size
        self.cutoff_prob = cutoff_prob
        self.cutoff_top_n = cutoff_top_n
        self.num_proc = num_proc_bsearch
        self.character_mode = is_character_vocabulary(self.labels)
        # Sentencepiece pieces ("▁new", "ew") are pyctcdecode's BPE mode as they are; characters get the mark above.
        pieces = any(lab.startswith(WORD_START) for lab in self.labels)
        alphabet = Alphabet(_decoder_labels(self.labels, self.character_mode), is_bpe=self.character_mode or pieces)
        if lang_model_path:
            language_model = self._load_lm(Path(lang_model_path), alpha, beta, unigrams)
        else:
            language_model = None
            logger.warning("no language model given: beam search runs without one (alpha and beta unused)")
        self._decoder = BeamSearchDecoderCTC(alphabet, language_model)
        self._pool: Pool | None = None
        # pyctcdecode matches hotwords word by word: in character mode every CJK character is a word
        self.hotwords = [" ".join(t) for t in (tokenize_for_lm(normalize_text(h)) for h in hotwords or []) if t]
        self.hotword_weight = float(hotword_weight)
        self._workers: set[int] = set()

    def _load_lm(self, path: Path, alpha: float, beta: float, unigrams: list[str] | None):
        import kenlm

        if not path.is_file():
            raise LitAsrError(f"language model not found: {path} (build one with scripts/build_lm.py)")
        with path.open("rb") as f:
            is_binary = f.read(len(_KENLM_BINARY_MAGIC)) == _KENLM_BINARY_MAGIC
        config = kenlm.Config()
        config.show_progress = False  # kenlm would draw a progress bar on stderr for every load
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            model = kenlm.Model(str(path), config)
        except (OSError, RuntimeError) as err:
            raise LitAsrError(f"cannot load language model {path}: {first_line(err)}") from None
        if unigrams is None and not is_binary:
            unigrams = read_arpa_unigrams(path)
        elif unigrams is None:
            logger.info("binary LM %s without unigrams: unknown words are looked up in the model itself", path)
        return _TokenLM(model, unigrams, alpha=float(alpha), beta=float(beta))

    def _prune(self, log_probs: np.ndarray) -> np.ndarray:
        return cutoff_prune(log_probs, len(self.labels), self.cutoff_prob, self.cutoff_top_n)

    def _get_pool(self) -> Pool:
        # pyctcdecode keeps the LM in a class-level dict that the forked workers inherit
        if self._pool is None:
            super()._get_pool()
            self._workers = self._worker_pids()
        return self._pool

    def _clean(self, text: str) -> str:
        return normalize_text(text.replace(UNK_CHAR, ""))

    def submit(self, log_probs: list[np.ndarray]) -> Callable[[], list[str]]:
        """Start decoding in the worker processes and return at once; calling the result waits for the texts.

        With ``num_proc_bsearch`` > 1 the caller's work goes on while the workers decode (the per-epoch test pass
        runs the network on the next batches meanwhile); with 1 the decoding happens here, before returning.
        """
        pruned = [skip_blank_frames(self._prune(lp), self.blank_skip_prob)[0] for lp in log_probs]
        todo = [i for i, lp in enumerate(pruned) if len(lp)]  # pyctcdecode dislikes zero frames
        decode = functools.partial(self._decoder.decode, beam_width=self.beam_size,
                                   beam_prune_logp=self.beam_prune_logp, token_min_logp=self.token_min_logp,
                                   hotwords=self.hotwords or None, hotword_weight=self.hotword_weight)
        if self.num_proc > 1 and todo:
            wait = functools.partial(self._wait, self._get_pool().map_async(decode, [pruned[i] for i in todo]))
        else:
            done = [decode(pruned[i]) for i in todo]
            wait = lambda: done  # noqa: E731 - already decoded

        def result() -> list[str]:
            out = [""] * len(pruned)
            for i, text in zip(todo, wait()):
                out[i] = self._clean(text)
            return out

        return result

    def _worker_pids(self) -> set[int]:
        return {p.pid for p in self._pool._pool}  # the pool replaces a dead worker, but not the task it held

    def _wait(self, pending: AsyncResult) -> list[str]:
        while not pending.ready():
            pending.wait(1.0)
            if self._pool is not None and not pending.ready() and self._worker_pids() != self._workers:
                raise LitAsrError("a beam-search worker process was killed while decoding: its results are lost")
        return pending.get()

    def decode_batch(self, log_probs: list[np.ndarray]) -> list[str]:
        """Best transcript of each (frames, vocab) natural-log probability matrix, normalised."""
        return self.submit(log_probs)()

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.terminate()
        if hasattr(self, "_decoder"):
            self._decoder.cleanup()  # drops the LM from pyctcdecode's class-level store
