"""An embedded Mandarin demo corpus: real Chinese text from fortunes-zh, spoken by espeak-ng. No download."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from lit_asr.data.text import is_cjk, normalize_text
from lit_asr.errors import LitAsrError, first_line

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_FILES = tuple(FORTUNE_DIR / name for name in ("chinese", "tang300", "song100"))
SAMPLE_RATE = 16000
# espeak-ng 1.51's plain "cmn" voice reads many characters as pinyin spelled out in English ("qian two");
# the pinyin voice speaks the same dictionary entries as Mandarin syllables with tones.
VOICE = "cmn-latn-pinyin"
VARIANTS = ("", "f2", "f4", "m3", "m6", "klatt3")  # "" is the voice's own default
SPEED_RANGE = (120, 190)  # words per minute
PITCH_RANGE = (30, 70)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Titles, sources and years: 《静夜思》, [宋], （1954-）
_BRACKETED = re.compile(r"《[^》]*》|【[^】]*】|\[[^\]]*\]|（[^）]*）|\([^)]*\)")
# Not at spaces or quotes: a clause quoting Latin text is then dropped whole instead of leaving fragments.
_CLAUSE_BREAK = re.compile(r"[，。！？；：、,.!?;:—…|│]+")
_HEADER_PREFIXES = ("--", "—", "作者", "题目", "[", "【", "《")


def read_clauses(files: Iterable[str | Path] = FORTUNE_FILES) -> list[str]:
    """Normalised clauses of fortune files in file order, without colour codes, titles or attributions."""
    clauses = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise LitAsrError(f"fortune file not found: {path} (apt-get install fortunes-zh)")
        paragraphs, lines = [], []
        for line in _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace")).splitlines() + [""]:
            line = line.strip()
            if line and line != "%" and not line.startswith(_HEADER_PREFIXES):
                lines.append(line)
            elif lines:
                # Prose is hard-wrapped mid-sentence: rejoin a paragraph before cutting it into clauses.
                paragraphs.append("".join(lines))
                lines = []
        for paragraph in paragraphs:
            for clause in _CLAUSE_BREAK.split(_BRACKETED.sub("，", paragraph)):
                clause = normalize_text(clause)
                if clause:
                    clauses.append(clause)
    return clauses


def select_sentences(
    clauses: Sequence[str],
    num_train: int,
    num_test: int,
    *,
    min_chars: int = 4,
    max_chars: int = 16,
    charset_size: int = 1000,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Pick disjoint train and test sentences: CJK-only, within the length range and the most frequent characters."""
    candidates = list(dict.fromkeys(
        c for c in clauses if min_chars <= len(c) <= max_chars and all(is_cjk(ch) for ch in c)
    ))
    counts = Counter(ch for c in candidates for ch in c)
    charset = {ch for ch, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:charset_size]}
    candidates = [c for c in candidates if set(c) <= charset]
    random.Random(seed).shuffle(candidates)
    if len(candidates) < num_train + num_test:
        raise LitAsrError(
            f"only {len(candidates)} distinct sentences fit --min-chars {min_chars} --max-chars {max_chars} "
            f"--charset-size {charset_size}; ask for fewer or widen those limits"
        )
    # Test first, so the test set stays the same when only --num-train changes.
    return candidates[num_test:num_test + num_train], candidates[:num_test]


def write_lm_text(clauses: Iterable[str], test_texts: Sequence[str], path: str | Path) -> int:
    """Write every clause that holds no test sentence, one per line, as language-model text; returns the count.

    The LM may read far more text than is spoken (the whole fortune collection, not just the train sentences),
    but never a test sentence: that would score the test set with an LM that has seen it.
    """
    tests = set(test_texts)
    kept = [c for c in dict.fromkeys(clauses) if c not in tests and not any(t in c for t in tests)]
    Path(path).write_text("".join(f"{c}\n" for c in kept), encoding="utf-8")
    return len(kept)


@dataclass(frozen=True)
class SynthJob:
    """One utterance to speak: text, destination and voice settings."""

    text: str
    path: Path
    variant: str
    speed: int
    pitch: int
    voice: str = VOICE

    def command(self) -> list[str]:
        """The espeak-ng argument list (never a shell string)."""
        voice = f"{self.voice}+{self.variant}" if self.variant else self.voice
        return ["espeak-ng", "-v", voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", self.text]


def plan_jobs(texts: Sequence[str], wav_dir: Path, split: str, seed: int, voice: str = VOICE) -> list[SynthJob]:
    """Voice, speed and pitch per utterance, from the seed and the utterance's place only."""
    jobs = []
    for i, text in enumerate(texts):
        rng = random.Random(f"{seed}/{split}/{i}")
        jobs.append(SynthJob(text, wav_dir / f"{i:05d}.wav", rng.choice(VARIANTS),
                             rng.randint(*SPEED_RANGE), rng.randint(*PITCH_RANGE), voice))
    return jobs


def _usable_wav(path: Path) -> bool:
    try:
        info = soundfile.info(str(path))
    except Exception:  # soundfile raises several types for unreadable files
        return False
    return info.frames > 0 and info.samplerate == SAMPLE_RATE


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core already


def synthesize(job: SynthJob) -> str | None:
    """Speak one job into a 16 kHz mono 16-bit wav; returns an error message or None."""
    try:
        out = subprocess.run(job.command(), capture_output=True, check=True, timeout=120).stdout
        wave, sr = soundfile.read(io.BytesIO(out), dtype="float32", always_2d=True)
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        return f"{job.path.name} ({job.text}): {first_line(exc)}"
    wave = torch.from_numpy(np.ascontiguousarray(wave.mean(axis=1)))
    if sr != SAMPLE_RATE:
        wave = AF.resample(wave, sr, SAMPLE_RATE)
    # Write then rename, so an interrupted run never leaves a half-written file that looks reusable.
    tmp = job.path.with_name(job.path.stem + ".part.wav")
    soundfile.write(str(tmp), np.clip(wave.numpy(), -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, job.path)
    return None


def _read_tsv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    rows = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {row[0]: row[1] for row in rows if len(row) == 2}


def _forget_stale(tsv: Path, jobs: Sequence[SynthJob]) -> None:
    """Delete wavs that a previous run made for other text, so only matching files get reused."""
    old = _read_tsv(tsv)
    for job in jobs:
        if job.path.exists() and old.get(str(job.path)) != job.text:
            job.path.unlink()


def check_espeak(voice: str = VOICE, probe_text: str = "你好") -> None:
    """Fail early, in one line, when espeak-ng or the voice is missing."""
    if shutil.which("espeak-ng") is None:
        raise LitAsrError("espeak-ng not found (apt-get install espeak-ng)")
    probe = subprocess.run(["espeak-ng", "-v", voice, "-q", "-x", probe_text], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        raise LitAsrError(f"espeak-ng has no {voice} voice: {probe.stderr.strip() or 'no phonemes'}")


def build_demo_corpus(
    corpus_dir: str | Path,
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    *,
    seed: int = 0,
    jobs: int | None = None,
    voice: str = VOICE,
    probe_text: str = "你好",
) -> tuple[Path, Path]:
    """Synthesise (or reuse) the wavs and write ``train.tsv``/``test.tsv`` (path<TAB>transcript)."""
    check_espeak(voice, probe_text)
    corpus_dir = Path(corpus_dir).resolve()
    todo: list[SynthJob] = []
    tsvs = []
    reused = 0
    for split, texts in (("train", train_texts), ("test", test_texts)):
        wav_dir = corpus_dir / "wav" / split
        wav_dir.mkdir(parents=True, exist_ok=True)
        split_jobs = plan_jobs(texts, wav_dir, split, seed, voice)
        tsv = corpus_dir / f"{split}.tsv"
        _forget_stale(tsv, split_jobs)
        tsv.write_text("".join(f"{j.path}\t{j.text}\n" for j in split_jobs), encoding="utf-8")
        tsvs.append(tsv)
        for job in split_jobs:
            if _usable_wav(job.path):
                reused += 1
            else:
                todo.append(job)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    print(f"demo corpus {corpus_dir}: {reused} wavs reused, {len(todo)} to synthesise"
          + (f" on {jobs} processes" if todo else ""))
    start = time.perf_counter()
    errors = []
    if todo:
        with Pool(jobs, initializer=_worker_init) as pool:
            for err in tqdm(pool.imap_unordered(synthesize, todo, chunksize=8), total=len(todo),
                            desc="synthesising", unit="utt"):
                if err:
                    errors.append(err)
        elapsed = time.perf_counter() - start
        print(f"synthesised {len(todo) - len(errors)} utterances in {elapsed:.1f} s "
              f"({(len(todo) - len(errors)) / max(elapsed, 1e-9):.1f} utt/s)")
    if errors:
        # The checks in prepare report these files as missing; show the cause once.
        print(f"espeak-ng failed on {len(errors)} utterances, e.g. {errors[0]}")
    return tsvs[0], tsvs[1]
