"""CTC prefix beam search in C++ (flashlight-text's lexicon-free decoder, through torchaudio) with KenLM.

A drop-in for :class:`lit_asr.decoding.beam_search.BeamSearchDecoder` (``decoder=beam_search_fast``) for
character vocabularies (Mandarin), where every label is one LM token:

* ``alpha``/``beta`` mean what they mean for pyctcdecode: each LM token adds ``alpha * ln p(token | history) +
  beta``; a token unknown to the LM also gets pyctcdecode's unknown-word offset (-10, log10, times alpha), and
  the end of the sentence adds ``alpha * ln p(</s> | history)``. flashlight's lexicon-free decoder has no
  per-token bonus of its own, so the LM it calls is a thin wrapper (:class:`_BonusKenLM`) that returns this
  whole sum; its scores are cached per token history, so each history is scored once.
* ``cutoff_prob``/``cutoff_top_n`` mask the same tokens as the pyctcdecode decoder; ``beam_prune_logp`` is
  flashlight's beam threshold (hypotheses this far below the best are dropped), ``token_min_logp`` drops
  tokens below that log-probability, ``blank_skip_prob`` shrinks runs of near-certain blank frames as there.
* Hypotheses that spell the same text are merged by adding their probabilities (flashlight's ``log_add``),
  as pyctcdecode does. The LM scores a character as soon as it is emitted, not when the next one starts, so
  pruning can differ slightly from pyctcdecode; final scores are the same.
* Labels that are not CJK characters (Latin letters, digits, space) get no LM score: pyctcdecode joins such
  runs into words for the LM, which a lexicon-free decoder cannot. Word vocabularies (English) are refused.
"""

from __future__ import annotations

import logging
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np
import torch

from lit_asr.data.text import is_cjk, normalize_text
from lit_asr.decoding.beam_search import UNK_LABEL, cutoff_prune, is_character_vocabulary, skip_blank_frames
from lit_asr.decoding.lm import read_arpa_unigrams
from lit_asr.decoding.worker_pool import PooledDecoder
from lit_asr.errors import LitAsrError

logger = logging.getLogger(__name__)

_LN10 = float(np.log(10.0))
_UNK_LOG10_OFFSET = -10.0  # pyctcdecode's DEFAULT_UNK_LOGP_OFFSET, same meaning
_WORKER_DECODER: "FastBeamSearchDecoder | None" = None  # the decoder forked pool workers use


def _lm_class():
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    class _BonusKenLM(CTCDecoderLM):
        """KenLM scores with pyctcdecode's weighting: alpha * ln p + beta per token, cached per history."""

        def __init__(self, model, labels: list[str], alpha: float, beta: float, unigrams: set[str] | None):
            CTCDecoderLM.__init__(self)
            import kenlm

            self._kenlm, self._model = kenlm, model
            self._weight, self._beta = alpha * _LN10, beta
            self._words: list[str | None] = []  # per label: the LM token, or None for no LM score
            self._unknown: list[bool] = []
            for lab in labels:
                word = "<unk>" if lab == UNK_LABEL else lab if len(lab) == 1 and is_cjk(lab) else None
                self._words.append(word)
                known = word is not None and word in model and (unigrams is None or word in unigrams)
                self._unknown.append(word is not None and not known)
            self._cache: dict = {}  # flashlight state -> (kenlm state, score of reaching it)

        def start(self, start_with_nothing: bool):
            state = CTCDecoderLMState()
            kstate = self._kenlm.State()
            self._model.BeginSentenceWrite(kstate)
            self._cache = {state: (kstate, 0.0)}
            return state

        def score(self, state, usr_token_idx: int):
            child = state.child(usr_token_idx)
            hit = self._cache.get(child)
            if hit is not None:
                return child, hit[1]
            kstate = self._cache[state][0]
            word = self._words[usr_token_idx]
            if word is None:
                self._cache[child] = (kstate, 0.0)
                return child, 0.0
            out = self._kenlm.State()
            log10 = self._model.BaseScore(kstate, word, out)
            if self._unknown[usr_token_idx]:
                log10 += _UNK_LOG10_OFFSET
            total = self._weight * log10 + self._beta
            self._cache[child] = (out, total)
            return child, total

        def finish(self, state):
            out = self._kenlm.State()
            return state.child(-1), self._weight * self._model.BaseScore(self._cache[state][0], "</s>", out)

    return _BonusKenLM


class FastBeamSearchDecoder(PooledDecoder):
    """Batch CTC beam search with KenLM shallow fusion in C++ (flashlight-text), optionally in a process pool."""

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
        beam_prune_logp: float = -10.0,
        token_min_logp: float = -30.0,
        blank_skip_prob: float | None = None,
        unigrams: list[str] | None = None,
        hotwords: list[str] | None = None,
        hotword_weight: float = 3.0,
    ):
        if hotwords:  # flashlight's lexicon-free decoder has no hotword bonus; refuse rather than ignore them
            raise LitAsrError("decoder=beam_search_fast has no hotwords: use decoder=beam_search for "
                              "decoder.hotwords")
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as err:  # flashlight-text missing
            raise LitAsrError(f"decoder=beam_search_fast needs flashlight-text ({err})") from None
        if beam_size < 1 or cutoff_top_n < 1 or num_proc_bsearch < 1:
            raise LitAsrError("beam_size, cutoff_top_n and num_proc_bsearch must be at least 1")
        if not 0.0 < cutoff_prob <= 1.0:
            raise LitAsrError(f"cutoff_prob must be in (0, 1], got {cutoff_prob}")
        if beam_prune_logp >= 0 or token_min_logp >= 0:
            raise LitAsrError("beam_prune_logp and token_min_logp are natural-log thresholds and must be negative")
        if blank_skip_prob is not None and not 0.0 < blank_skip_prob <= 1.0:
            raise LitAsrError(f"blank_skip_prob must be in (0, 1] or null, got {blank_skip_prob}")
        self.labels = list(labels)
        if not is_character_vocabulary(self.labels):
            raise LitAsrError("decoder=beam_search_fast scores characters and needs a character (Mandarin) "
                              "vocabulary; use decoder=beam_search for word vocabularies")
        self.cutoff_prob, self.cutoff_top_n = cutoff_prob, min(cutoff_top_n, len(self.labels))
        self.token_min_logp, self.blank_skip_prob = float(token_min_logp), blank_skip_prob
        self.num_proc = num_proc_bsearch
        lm = self._load_lm(Path(lang_model_path), alpha, beta, unigrams) if lang_model_path else None
        if lm is None:
            logger.warning("no language model given: beam search runs without one (alpha and beta unused)")
        tokens = [f"#{i}" for i in range(len(self.labels))]  # flashlight needs unique token names only
        self._decoder = ctc_decoder(lexicon=None, tokens=tokens, lm=lm, nbest=1, beam_size=beam_size,
                                    beam_size_token=self.cutoff_top_n, beam_threshold=-float(beam_prune_logp),
                                    lm_weight=1.0, sil_score=0.0, log_add=True, blank_token=tokens[0],
                                    sil_token=tokens[0], unk_word=tokens[0])
        self._pool: Pool | None = None

    def _load_lm(self, path: Path, alpha: float, beta: float, unigrams: list[str] | None):
        import kenlm

        if not path.is_file():
            raise LitAsrError(f"language model not found: {path} (build one with scripts/build_lm.py)")
        config = kenlm.Config()
        config.show_progress = False
        config.arpa_complain = kenlm.ARPALoadComplain.NONE
        try:
            model = kenlm.Model(str(path), config)
        except (OSError, RuntimeError) as err:
            raise LitAsrError(f"cannot load language model {path}: {err}") from None
        if unigrams is None and path.suffix == ".arpa":
            unigrams = read_arpa_unigrams(path)
        return _lm_class()(model, self.labels, float(alpha), float(beta), set(unigrams) if unigrams else None)

    def _prepare(self, log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp = cutoff_prune(log_probs, len(self.labels), self.cutoff_prob, self.cutoff_top_n)
        lp = np.where(lp < self.token_min_logp, np.minimum(lp, -1e4), lp)  # flashlight has no per-token floor
        return skip_blank_frames(lp, self.blank_skip_prob)

    def decode_frames(self, log_probs: np.ndarray) -> tuple[str, list[int]]:
        """Best transcript of one (frames, vocab) log-probability matrix and the frame of each kept token."""
        lp, frame_index = self._prepare(log_probs)
        if not len(lp):
            return "", []
        hyp = self._decoder(torch.from_numpy(np.ascontiguousarray(lp, dtype=np.float32)).unsqueeze(0))[0][0]
        ids, steps = hyp.tokens.tolist(), hyp.timesteps.tolist()
        # labels are Vocabulary.labels(): '' for the blank; <unk> takes its frames but is not text.
        # torchaudio counts the decoder's start state as step 0, so frame f is step f + 1.
        keep = [(i, int(frame_index[t - 1])) for i, t in zip(ids, steps)
                if self.labels[i] not in ("", UNK_LABEL)]
        return normalize_text("".join(self.labels[i] for i, _ in keep)), [t for _, t in keep]

    def _get_pool(self) -> Pool:
        global _WORKER_DECODER
        if self._pool is None:
            _WORKER_DECODER = self  # what the forked workers decode with
        return super()._get_pool()

    def decode_batch(self, log_probs: list[np.ndarray]) -> list[str]:
        """Best transcript of each (frames, vocab) natural-log probability matrix, normalised."""
        arrays = [np.asarray(lp, dtype=np.float32) for lp in log_probs]
        if self.num_proc > 1 and len(arrays) > 1:
            return self._get_pool().map(_decode_in_worker, arrays, chunksize=max(1, len(arrays) // 32))
        return [self.decode_frames(lp)[0] for lp in arrays]


def _decode_in_worker(log_probs: np.ndarray) -> str:
    return _WORKER_DECODER.decode_frames(log_probs)[0]
