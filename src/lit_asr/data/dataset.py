"""Utterances from a manifest as (normalised features, token ids), and the padding collate function."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import BinaryIO

import torch
from torch.utils.data import Dataset

from lit_asr.data.audio import load_audio
from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.data.manifest import ManifestEntry
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError

log = logging.getLogger(__name__)


class AsrDataset(Dataset):
    """Loads audio, perturbs the waveform, extracts and normalises features, perturbs the spectrogram.

    With ``duration_tolerance`` (seconds) an utterance whose audio is longer or shorter than its entry says by more
    than that is skipped, so a file changed after its manifest was read cannot break the batch bounds.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        vocabulary: Vocabulary,
        featurizer: FeatureExtractor,
        normalizer: Normalizer,
        wave_augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
        spec_augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        duration_tolerance: float | None = None,
    ):
        self.entries = list(entries)
        self.vocabulary = vocabulary
        self.featurizer = featurizer
        self.normalizer = normalizer
        self.wave_augment = wave_augment
        self.spec_augment = spec_augment
        self.duration_tolerance = duration_tolerance

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict | None:
        entry = self.entries[index]
        try:
            return self.make_item(entry.audio_filepath, entry.text, entry.audio_filepath, entry.duration)
        except LitAsrError as exc:
            # One unreadable file must not end the epoch: report it and let collate drop it.
            log.warning("skipping utterance: %s (replace the file or remove it from the manifest)", exc)
            return None

    def make_item(self, source: str | BinaryIO, text: str, audio: str, duration: float | None = None) -> dict:
        """One training item from an audio file or file-like object (a shard member); LitAsrError if unreadable,
        or if it lasts more than ``duration_tolerance`` longer or shorter than ``duration`` (what it was batched by)."""
        wave = load_audio(source, self.featurizer.sample_rate)
        seconds = wave.numel() / self.featurizer.sample_rate
        if self.duration_tolerance is not None and duration is not None and \
                abs(seconds - duration) > self.duration_tolerance:
            # Batches were bounded (max_batch_duration) by the manifest's length; the file has changed since.
            raise LitAsrError(f"audio {audio} lasts {seconds:.2f} s, not the {duration:.2f} s it was batched by "
                              "(re-run scripts/prepare_data.py)")
        if self.wave_augment is not None:
            wave = self.wave_augment(wave, self.featurizer.sample_rate)
        feats = self.normalizer(self.featurizer(wave))
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        tokens = torch.tensor(self.vocabulary.encode(text), dtype=torch.long)
        return {"feats": feats, "tokens": tokens, "text": text, "audio": audio}


def collate(items: list[dict | None]) -> dict:
    """Pad features to (B, T, F) and tokens to (B, L) with their lengths; drops items that failed to load."""
    items = [it for it in items if it is not None]
    if not items:
        return {"feats": torch.zeros(0, 1, 1), "feat_lengths": torch.zeros(0, dtype=torch.long),
                "tokens": torch.zeros(0, 1, dtype=torch.long), "token_lengths": torch.zeros(0, dtype=torch.long),
                "texts": [], "audio": []}
    feat_lengths = torch.tensor([it["feats"].shape[0] for it in items])
    token_lengths = torch.tensor([it["tokens"].numel() for it in items])
    feats = torch.zeros(len(items), int(feat_lengths.max()), items[0]["feats"].shape[1])
    tokens = torch.zeros(len(items), max(1, int(token_lengths.max())), dtype=torch.long)
    for i, it in enumerate(items):
        feats[i, : feat_lengths[i]] = it["feats"]
        tokens[i, : token_lengths[i]] = it["tokens"]
    return {"feats": feats, "feat_lengths": feat_lengths, "tokens": tokens, "token_lengths": token_lengths,
            "texts": [it["text"] for it in items], "audio": [it["audio"] for it in items]}
