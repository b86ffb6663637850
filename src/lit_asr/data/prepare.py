"""Turn lists of (audio, transcript) into a checked dataset folder: manifests, vocabulary, mean/std, skip list."""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lit_asr.data.audio import audio_info, load_audio
from lit_asr.data.features import FeatureExtractor, compute_mean_std, save_mean_std
from lit_asr.data.manifest import ManifestEntry, write_manifest
from lit_asr.data.text import normalize_text
from lit_asr.data.tokenizer import TOKENIZER_TYPES, SentencePieceVocabulary
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError

SPLITS = ("train", "dev", "test")
OPTIONAL_SPLITS = ("dev",)  # without one, training validates on test (with a warning)


@dataclass(frozen=True)
class Candidate:
    """An utterance before checking: where its audio is and its raw transcript."""

    audio: str
    text: str


@dataclass(frozen=True)
class Skipped:
    """An utterance left out, with a reason from a fixed set (counted) and a detail (for the reader)."""

    path: str
    reason: str
    split: str
    detail: str = ""


@dataclass(frozen=True)
class Policy:
    """What the checks accept."""

    sample_rate: int = 16000
    min_duration: float = 0.5
    max_duration: float = 20.0
    resample: bool = True


@dataclass
class Checked:
    """Result of checking every split."""

    entries: dict[str, list[ManifestEntry]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    skipped: list[Skipped] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)


def read_list(path: str | Path, split: str) -> tuple[list[Candidate], list[Skipped]]:
    """Read ``audio<TAB>transcript`` lines; relative audio paths are taken from the list's folder."""
    path = Path(path)
    if not path.is_file():
        raise LitAsrError(f"list file not found: {path}")
    items, bad = [], []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:  # decoding with replacement would silently drop the bad bytes from the transcript
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark is no part of a path
        except UnicodeDecodeError as exc:
            bad.append(Skipped(f"{path}:{lineno}", "not UTF-8 text", split, f"{exc.reason} at byte {exc.start}"))
            continue
        if not line.strip():
            continue
        audio, sep, text = line.partition("\t")
        if not sep or not audio.strip():
            bad.append(Skipped(f"{path}:{lineno}", "malformed line", split, "expected audio<TAB>transcript"))
            continue
        audio_path = Path(audio.strip())
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        items.append(Candidate(str(audio_path.resolve()), text))
    return items, bad


def read_masr_manifest(path: str | Path, split: str) -> tuple[list[Candidate], list[Skipped]]:
    """Read a MASR manifest (JSON lines: ``audio_filepath``, ``text``, ``duration``) as candidates to re-check.

    MASR writes audio paths relative to the folder it runs in; a relative path is tried from the current folder,
    then from the manifest's. Segments of MASR's merged audio files (``start_time``/``end_time``) are skipped:
    lit-asr reads whole files.
    """
    path = Path(path)
    if not path.is_file():
        raise LitAsrError(f"MASR manifest not found: {path}")
    items, bad = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(Skipped(where, "malformed line", split, f"not JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("audio_filepath"), str) \
                or not isinstance(row.get("text"), str):
            bad.append(Skipped(where, "malformed line", split, "needs audio_filepath and text strings"))
            continue
        if "start_time" in row or "end_time" in row:
            bad.append(Skipped(where, "segment of a merged file", split,
                               "start_time/end_time: lit-asr reads whole audio files"))
            continue
        audio = Path(row["audio_filepath"])
        if not audio.is_absolute() and not audio.exists():
            audio = path.parent / audio
        items.append(Candidate(str(audio.resolve()), row["text"]))
    return items, bad


def split_by_text(items: Sequence[Candidate], test_fraction: float, seed: int, *,
                  keep: Iterable[str] = (), option: str = "--test-fraction") -> tuple[list, list]:
    """Random (rest, held-out) split that keeps every utterance of one transcript on the same side.

    Transcripts in ``keep`` (normalised) never go to the held-out side: a dev set taken from train stays disjoint
    from the test sentences that way. ``option`` names the fraction in the error message.
    """
    if not 0.0 < test_fraction < 1.0:
        raise LitAsrError(f"{option} must be between 0 and 1, not {test_fraction}")
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for item in items:
        groups[normalize_text(item.text)].append(item)
    kept = set(keep)
    keys = sorted(k for k in groups if k not in kept)
    random.Random(seed).shuffle(keys)
    held_out, count = set(), 0
    for key in keys:
        if count >= test_fraction * len(items):
            break
        held_out.add(key)
        count += len(groups[key])
    # both sides keep the input order (file order of the list)
    rest = [item for item in items if normalize_text(item.text) not in held_out]
    return rest, [item for item in items if normalize_text(item.text) in held_out]


def hold_out_dev(train: Sequence[Candidate], test: Sequence[Candidate], fraction: float,
                 seed: int) -> tuple[list[Candidate], list[Candidate]]:
    """(train, dev): about ``fraction`` of train held out as dev, its sentences in neither train nor test."""
    if fraction == 0:
        return list(train), []
    return split_by_text(train, fraction, seed, keep={normalize_text(c.text) for c in test}, option="--dev-fraction")


def aishell_candidates(root: str | Path, dev_as: str = "dev") -> tuple[dict[str, list[Candidate]], list[Skipped]]:
    """Candidates of an AISHELL-1 tree; ``dev_as`` puts its dev set into ``dev`` (default), ``train``, ``test``
    or nowhere (``skip``)."""
    root = Path(root)
    base = root / "data_aishell" if (root / "data_aishell").is_dir() else root
    transcript = base / "transcript" / "aishell_transcript_v0.8.txt"
    if not transcript.is_file():
        raise LitAsrError(f"AISHELL transcript not found: {transcript}")
    texts = {}
    for line in transcript.read_text(encoding="utf-8", errors="replace").splitlines():
        utt, _, text = line.strip().partition(" ")
        if utt:
            texts[utt] = text
    sources = {"train": ["train"], "dev": [], "test": ["test"]}
    if dev_as in sources:
        sources[dev_as].append("dev")
    elif dev_as != "skip":
        raise LitAsrError(f"--dev-as must be dev, train, test or skip, not {dev_as!r}")
    found: dict[str, list[Candidate]] = {s: [] for s in SPLITS}
    skipped = []
    for split, folders in sources.items():
        for folder in folders:
            wavs = sorted((base / "wav" / folder).glob("*/*.wav"))
            if not wavs and folder != "dev":
                raise LitAsrError(f"no wavs under {base / 'wav' / folder}/<speaker>/")
            for wav in wavs:
                if wav.stem in texts:
                    found[split].append(Candidate(str(wav.resolve()), texts[wav.stem]))
                else:
                    why = f"{wav.stem} not in {transcript.name}"
                    skipped.append(Skipped(str(wav.resolve()), "no transcript", split, why))
    return found, skipped


def _probe(path: str) -> tuple[int, int, int] | str:
    """(frames, sample_rate, channels), or why the file cannot be used."""
    if not os.path.isfile(path):
        return "missing file"
    try:
        return audio_info(path)
    except LitAsrError as exc:
        return str(exc).rsplit(": ", 1)[-1]  # libsndfile's own words, without the path again


def _probe_all(paths: list[str], jobs: int) -> dict[str, tuple[int, int, int] | str]:
    bar = dict(total=len(paths), desc="checking audio", unit="file", mininterval=1.0)
    if jobs <= 1 or len(paths) < 256:  # a pool costs more than it saves on small lists
        return dict(zip(paths, list(tqdm(map(_probe, paths), **bar))))
    with Pool(jobs) as pool:
        return dict(zip(paths, list(tqdm(pool.imap(_probe, paths, chunksize=64), **bar))))


def _verdict(cand: Candidate, text: str, info: tuple[int, int, int] | str, policy: Policy) -> tuple[str, str] | None:
    """(reason, detail) why an utterance is unusable, or None."""
    if not text:
        return "empty transcript", f"{cand.text!r} after normalisation"
    if info == "missing file":
        return "missing file", ""
    if isinstance(info, str):
        return "unreadable audio", info
    frames, rate, _ = info
    if frames == 0:
        return "empty audio", "0 samples"
    if rate != policy.sample_rate and not policy.resample:
        return "wrong sample rate", f"{rate} Hz, expected {policy.sample_rate} Hz (--no-resample)"
    if frames / rate < policy.min_duration:
        return "too short", f"{frames / rate:.2f} s < {policy.min_duration} s"
    if frames / rate > policy.max_duration:
        return "too long", f"{frames / rate:.2f} s > {policy.max_duration} s"
    return None


def check_candidates(candidates: dict[str, Sequence[Candidate]], policy: Policy, jobs: int = 1) -> Checked:
    """Keep the usable utterances of each split; an audio/transcript pair kept in one split is not repeated later."""
    paths = sorted({c.audio for split in SPLITS for c in candidates.get(split, ())})
    probed = _probe_all(paths, jobs)
    result = Checked()
    seen: dict[tuple[str, str], str] = {}  # (audio, text) -> split it was kept in
    for split in SPLITS:
        for cand in candidates.get(split, ()):
            text = normalize_text(cand.text)
            info = probed[cand.audio]
            verdict = _verdict(cand, text, info, policy)
            if verdict is None and (cand.audio, text) in seen:
                verdict = "duplicate", f"same audio and transcript already in {seen[cand.audio, text]}"
            if verdict is not None:
                result.skipped.append(Skipped(cand.audio, verdict[0], split, verdict[1]))
                continue
            frames, rate, channels = info
            seen[cand.audio, text] = split
            result.entries[split].append(ManifestEntry(cand.audio, frames / rate, text))
            if channels > 1:
                result.notes["multi-channel, mixed down on load"] += 1
            if rate != policy.sample_rate:
                result.notes[f"at {rate} Hz, resampled to {policy.sample_rate} Hz on load"] += 1
    return result


_extractor: FeatureExtractor | None = None  # per worker process


def _init_feature_worker(extractor: FeatureExtractor) -> None:
    global _extractor
    _extractor = extractor
    torch.set_num_threads(1)  # small FFTs: one thread per process is several times faster than sharing cores


def _features(path: str) -> torch.Tensor | str:
    """Features of one file, or why it could not be read (its header passed, its samples did not)."""
    try:
        return _extractor(load_audio(path, _extractor.sample_rate))
    except LitAsrError as exc:
        return str(exc)


def feature_statistics(entries: Sequence[ManifestEntry], extractor: FeatureExtractor, num_samples: int,
                       seed: int, jobs: int = 1) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Mean/std of features over a random sample of ``entries``: (mean, std, frames, utterances used).

    A file that fails to load is left out (and named on the console): one bad file must not poison the statistics.
    """
    sample = random.Random(seed).sample([e.audio_filepath for e in entries], min(num_samples, len(entries)))
    bar = dict(total=len(sample), desc="mean/std", unit="utt", mininterval=1.0)
    failed: list[str] = []

    def readable(results):
        for result in results:
            if isinstance(result, str):
                failed.append(result)
                tqdm.write(f"warning: left out of mean/std: {result}")
            else:
                yield result

    with Pool(max(1, jobs), initializer=_init_feature_worker, initargs=(extractor,)) as pool:
        mean, std, frames = compute_mean_std(readable(tqdm(pool.imap(_features, sample, chunksize=16), **bar)))
    return mean, std, frames, len(sample) - len(failed)


def _write_skipped(path: Path, skipped: Sequence[Skipped]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("path\treason\tsplit\tdetail\n")
        for s in skipped:
            f.write(f"{s.path}\t{s.reason}\t{s.split}\t{s.detail}\n")


def _summary_table(skipped: Sequence[Skipped], notes: Counter, kept: dict[str, int]) -> str:
    counts = Counter((s.reason, s.split) for s in skipped)
    reasons = sorted({r for r, _ in counts}, key=lambda r: -sum(counts[r, s] for s in SPLITS))
    width = max([len(r) for r in reasons] + [len("kept")])
    rows = [f"  {'':<{width}}" + "".join(f"  {s:>7}" for s in SPLITS)]
    rows += [f"  {r:<{width}}" + "".join(f"  {counts[r, s]:>7}" for s in SPLITS) for r in reasons]
    rows.append(f"  {'kept':<{width}}" + "".join(f"  {kept[s]:>7}" for s in SPLITS))
    rows += [f"  note: {n} kept utterance(s) {what}" for what, n in notes.most_common()]
    return "\n".join(rows)


@dataclass
class Summary:
    """What :func:`prepare_dataset` wrote."""

    out_dir: Path
    counts: dict[str, int]
    hours: dict[str, float]
    skipped: Counter
    notes: Counter
    vocabulary_size: int


def build_vocabulary(texts: Sequence[str], tokenizer: str, vocab_size: int,
                     min_count: int) -> tuple[Vocabulary, str]:
    """The vocabulary of the train transcripts and the file name it is saved under in the dataset folder."""
    if tokenizer == "char":
        return Vocabulary.build(texts, min_count=min_count), "vocabulary.txt"
    if tokenizer not in TOKENIZER_TYPES:
        raise LitAsrError(f"--tokenizer must be one of {', '.join(TOKENIZER_TYPES)}, not {tokenizer!r}")
    return SentencePieceVocabulary.train(texts, tokenizer, vocab_size), "tokenizer.model"


def prepare_dataset(
    candidates: dict[str, Sequence[Candidate]],
    out_dir: str | Path,
    extractor: FeatureExtractor,
    *,
    policy: Policy | None = None,
    pre_skipped: Sequence[Skipped] = (),
    num_samples: int = 2000,
    min_count: int = 1,
    seed: int = 0,
    jobs: int | None = None,
    tokenizer: str = "char",
    vocab_size: int = 500,
) -> Summary:
    """Check candidates and write manifests, the vocabulary, ``mean_std.npz`` and ``skipped.tsv``.

    ``tokenizer`` ``char`` writes ``vocabulary.txt`` (characters of the train transcripts seen ``min_count``
    times); ``bpe`` or ``unigram`` trains a sentencepiece model of at most ``vocab_size`` pieces on them and writes
    ``tokenizer.model``.

    ``manifest.dev`` is written when ``candidates`` has dev utterances; an older one is removed otherwise, so
    a dataset folder never mixes a dev split with train/test splits it was not held out from.
    """
    policy = policy or Policy(sample_rate=extractor.sample_rate)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    checked = check_candidates(candidates, policy, jobs)
    skipped = list(pre_skipped) + checked.skipped
    _write_skipped(out_dir / "skipped.tsv", skipped)
    kept = {s: len(checked.entries[s]) for s in SPLITS}
    print(f"checked {sum(len(c) for c in candidates.values()) + len(pre_skipped)} utterances; "
          f"other sample rates {'accepted, resampled on load' if policy.resample else 'rejected (--no-resample)'}; "
          f"duration {policy.min_duration}..{policy.max_duration} s")
    print(_summary_table(skipped, checked.notes, kept))
    for split in SPLITS:
        if not kept[split] and (split not in OPTIONAL_SPLITS or candidates.get(split)):
            n = sum(1 for s in skipped if s.split == split)
            raise LitAsrError(f"no usable {split} utterances ({n} skipped, reasons in {out_dir / 'skipped.tsv'})")

    train, test = checked.entries["train"], checked.entries["test"]
    for split in SPLITS:
        if kept[split]:
            write_manifest(out_dir / f"manifest.{split}", checked.entries[split])
        else:
            (out_dir / f"manifest.{split}").unlink(missing_ok=True)
    vocab, vocab_file = build_vocabulary([e.text for e in train], tokenizer, vocab_size, min_count)
    vocab.save(out_dir / vocab_file)
    mean, std, frames, used = feature_statistics(train, extractor, num_samples, seed, jobs)
    save_mean_std(out_dir / "mean_std.npz", mean, std, extractor.config, frames)

    hours = {s: sum(e.duration for e in checked.entries[s]) / 3600 for s in SPLITS}
    oov = sum(1 for e in test if vocab.count_unknown(e.text))
    print(f"wrote {out_dir}/")
    for split in SPLITS:
        if kept[split]:
            print(f"  manifest.{split:<6} {kept[split]:>7} utterances, {hours[split]:.2f} h")
        else:
            print(f"  manifest.{split:<6}       - none (training validates on test; see --dev-fraction)")
    print(f"  {vocab_file:<15} {len(vocab):>7} tokens ({tokenizer}); "
          f"{oov} test utterance(s) hold characters outside it")
    print(f"  mean_std.npz    {extractor.method} {extractor.dim}-dim, from {used} train utterances ({frames} frames)")
    print(f"  skipped.tsv     {len(skipped):>7} entries")
    return Summary(out_dir, kept, hours, Counter(s.reason for s in skipped), checked.notes, len(vocab))
