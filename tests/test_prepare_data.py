"""scripts/prepare_data.py: checks of every bad case, the dataset files, AISHELL layout, demo corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lit_asr.data import demo_corpus
from lit_asr.data.features import FeatureExtractor
from lit_asr.data.prepare import (Candidate, Policy, aishell_candidates, hold_out_dev, prepare_dataset, read_list,
                                  split_by_text)
from lit_asr.data.text import is_cjk
from lit_asr.errors import LitAsrError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "prepare_data.py"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _skipped(out: Path) -> list[dict]:
    lines = (out / "skipped.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def messy_lists(tmp_path, write_wav, speak_wav):
    """A train list with one of every problem, and a clean test list; paths relative to the list."""
    d = tmp_path / "data"
    speak_wav(d / "good1.wav", "床前明月光")
    speak_wav(d / "good2.wav", "疑是地上霜")
    write_wav(d / "stereo.wav", 1.0, channels=2)
    write_wav(d / "rate8k.wav", 1.0, sample_rate=8000)
    write_wav(d / "short.wav", 0.2)
    write_wav(d / "long.wav", 3.0)
    write_wav(d / "empty.wav", 0.0)
    (d / "zero_bytes.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (d / "truncated.wav").write_bytes((d / "long.wav").read_bytes()[:30])
    write_wav(d / "silent_text.wav", 1.0)
    train = [
        ("good1.wav", "床前，明月光。"), ("good2.wav", "疑是 地上 霜"), ("stereo.wav", "举头望明月"),
        ("rate8k.wav", "低头思故乡"), ("short.wav", "太短"), ("long.wav", "太长了"), ("empty.wav", "空的"),
        ("zero_bytes.wav", "零字节"), ("corrupt.wav", "坏文件"), ("truncated.wav", "截断"),
        ("silent_text.wav", " 。！"), ("missing.wav", "不存在"), ("good1.wav", "床前明月光"),
    ]
    (d / "train.tsv").write_text("".join(f"{a}\t{t}\n" for a, t in train) + "no tab here\n", encoding="utf-8")
    speak_wav(d / "test1.wav", "春眠不觉晓")
    (d / "test.tsv").write_text("test1.wav\t春眠不觉晓\n", encoding="utf-8")
    return d


EXPECTED_SKIPS = {
    "too short": 1, "too long": 1, "empty audio": 1, "unreadable audio": 3, "empty transcript": 1,
    "missing file": 1, "duplicate": 1, "malformed line": 1,
}


def _prepare(d: Path, out: Path, **policy) -> object:
    train, bad = read_list(d / "train.tsv", "train")
    test, _ = read_list(d / "test.tsv", "test")
    return prepare_dataset({"train": train, "test": test}, out, FeatureExtractor(), pre_skipped=bad,
                           policy=Policy(max_duration=2.5, **policy), num_samples=3, jobs=1)


def test_list_skips_every_bad_case_and_writes_the_dataset(messy_lists, tmp_path):
    out = tmp_path / "out"
    summary = _prepare(messy_lists, out)
    skipped = _skipped(out)
    assert Counter(s["reason"] for s in skipped) == EXPECTED_SKIPS
    assert summary.skipped == EXPECTED_SKIPS
    by_name = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert by_name["corrupt.wav"] == by_name["truncated.wav"] == by_name["zero_bytes.wav"] == "unreadable audio"
    assert by_name["silent_text.wav"] == "empty transcript" and by_name["missing.wav"] == "missing file"

    train = _manifest(out / "manifest.train")
    assert [Path(e["audio_filepath"]).name for e in train] == ["good1.wav", "good2.wav", "stereo.wav", "rate8k.wav"]
    assert all(Path(e["audio_filepath"]).is_absolute() for e in train)
    assert [e["text"] for e in train[:2]] == ["床前明月光", "疑是地上霜"]
    assert train[3]["duration"] == pytest.approx(1.0)
    assert summary.notes == {"multi-channel, mixed down on load": 1, "at 8000 Hz, resampled to 16000 Hz on load": 1}
    assert [e["text"] for e in _manifest(out / "manifest.test")] == ["春眠不觉晓"]

    tokens = (out / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[:2] == ["<blank>", "<unk>"] and set("床前明月光疑是地上霜举头望低思故乡") == set(tokens[2:])
    with np.load(out / "mean_std.npz") as stats:
        assert stats["mean"].shape == stats["std"].shape == (80,)
        assert json.loads(str(stats["feature_config"])) == FeatureExtractor().config


def test_no_resample_rejects_other_sample_rates(messy_lists, tmp_path):
    out = tmp_path / "out"
    summary = _prepare(messy_lists, out, resample=False)
    assert summary.skipped["wrong sample rate"] == 1
    assert [Path(s["path"]).name for s in _skipped(out) if s["reason"] == "wrong sample rate"] == ["rate8k.wav"]


def test_test_fraction_keeps_one_transcript_on_one_side(tmp_path):
    items = [Candidate(f"/a/{i}_{r}.wav", f"句子{'一二三四五六七八九十'[i]}") for i in range(10) for r in range(3)]
    train, test = split_by_text(items, 0.2, seed=1)
    assert len(test) == 6 and len(train) == 24
    assert not {c.text for c in train} & {c.text for c in test}
    with pytest.raises(LitAsrError):
        split_by_text(items, 1.5, seed=1)


def test_dev_is_held_out_from_train_with_sentences_in_neither_train_nor_test():
    texts = [f"句子{i:02d}" for i in range(40)]
    train = [Candidate(f"/a/{i}_{r}.wav", texts[i]) for i in range(40) for r in range(2)]
    test = [Candidate(f"/t/{i}.wav", texts[i]) for i in range(10)]  # test repeats ten train sentences
    rest, dev = hold_out_dev(train, test, 0.1, seed=3)
    assert len(dev) == 8 and len(rest) == 72 and sorted(rest + dev, key=train.index) == train
    dev_texts = {c.text for c in dev}
    assert not dev_texts & {c.text for c in rest} and not dev_texts & {c.text for c in test}
    assert [c for c in train if c in rest] == rest  # list order kept
    assert hold_out_dev(train, test, 0.1, seed=3) == (rest, dev)
    assert hold_out_dev(train, test, 0.1, seed=4) != (rest, dev)
    assert hold_out_dev(train, test, 0.0, seed=3) == (train, [])
    with pytest.raises(LitAsrError, match="--dev-fraction"):
        hold_out_dev(train, test, 1.0, seed=3)


def test_aishell_layout(tmp_path, write_wav):
    base = tmp_path / "aishell" / "data_aishell"
    for split, spk, utt in [("train", "S0002", "BAC009S0002W0122"), ("train", "S0002", "BAC009S0002W0123"),
                            ("dev", "S0724", "BAC009S0724W0121"), ("test", "S0764", "BAC009S0764W0121"),
                            ("train", "S0003", "BAC009S0003W0999")]:
        write_wav(base / "wav" / split / spk / f"{utt}.wav", 1.0)
    (base / "transcript").mkdir()
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\n"
        "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
        "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n", encoding="utf-8")
    found, skipped = aishell_candidates(tmp_path / "aishell")
    assert [Path(c.audio).stem for c in found["train"]] == ["BAC009S0002W0122", "BAC009S0002W0123"]
    assert [Path(c.audio).stem for c in found["test"]] == ["BAC009S0764W0121"]
    assert [Path(c.audio).stem for c in found["dev"]] == ["BAC009S0724W0121"]  # its own dev set by default
    assert [(Path(s.path).stem, s.reason) for s in skipped] == [("BAC009S0003W0999", "no transcript")]
    found, _ = aishell_candidates(base, dev_as="train")  # data_aishell itself works as the root too
    assert len(found["train"]) == 3 and not found["dev"]

    out = tmp_path / "out"
    summary = prepare_dataset(found, out, FeatureExtractor(), pre_skipped=skipped, num_samples=5, jobs=1)
    assert summary.counts == {"train": 3, "dev": 0, "test": 1}
    assert not (out / "manifest.dev").exists()  # no dev candidates: training falls back to test
    assert _manifest(out / "manifest.train")[0]["text"] == "而对楼市成交抑制作用最大的限购"
    assert _skipped(out)[0]["reason"] == "no transcript"


def test_cli_list_with_test_fraction_and_linear_features(tmp_path, write_wav):
    lines = [f"{write_wav(tmp_path / f'{i}.wav', 0.6 + 0.1 * i).name}\t第{'一二三四五六七八'[i]}句\n" for i in range(8)]
    (tmp_path / "all.tsv").write_text("".join(lines), encoding="utf-8")
    result = _cli("list", "--train-list", "all.tsv", "--test-fraction", "0.25", "--out", "ds",
                  "--features", "conf/features/linear.yaml", "--jobs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "manifest.train" in result.stdout and "vocabulary.txt" in result.stdout
    assert len(_manifest(tmp_path / "ds" / "manifest.test")) == 2
    dev, train = _manifest(tmp_path / "ds" / "manifest.dev"), _manifest(tmp_path / "ds" / "manifest.train")
    assert len(dev) == 1 and len(train) == 5 and not {e["text"] for e in dev} & {e["text"] for e in train}
    with np.load(tmp_path / "ds" / "mean_std.npz") as stats:
        assert stats["mean"].shape == (161,)


def test_cli_nothing_usable_is_a_one_line_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    (tmp_path / "train.tsv").write_text("bad.wav\t你好\nmissing.wav\t再见\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("bad.wav\t你好\n", encoding="utf-8")
    result = _cli("list", "--train-list", "train.tsv", "--test-list", "test.tsv", "--out", "ds", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines and "no usable train utterances" in error_lines[0]
    assert len([r for r in _skipped(tmp_path / "ds")]) == 3


FORTUNE = (
    "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n%\n"
    "这是一段被硬换行截断\n的中文说明，其中“/etc/hosts”不算。\n\n\x1b[33m    -- Debian 《参考手册》\x1b[m\n%\n"
)


def test_read_clauses_drops_escapes_headers_and_attributions(tmp_path):
    (tmp_path / "fortune").write_text(FORTUNE, encoding="utf-8")
    assert demo_corpus.read_clauses([tmp_path / "fortune"]) == [
        "床前明月光", "疑是地上霜", "举头望明月", "低头思故乡", "这是一段被硬换行截断的中文说明",
        "其中etc hosts不算",  # select_sentences drops it: not CJK-only
    ]
    with pytest.raises(LitAsrError, match="fortunes-zh"):
        demo_corpus.read_clauses([tmp_path / "nothing"])


@pytest.fixture(scope="module")
def clauses():
    if not all(p.is_file() for p in demo_corpus.FORTUNE_FILES):
        pytest.skip("fortunes-zh is not installed")
    return demo_corpus.read_clauses()


def test_demo_text_selection_is_deterministic_and_disjoint(clauses):
    kwargs = dict(min_chars=4, max_chars=10, charset_size=300)
    train, test = demo_corpus.select_sentences(clauses, 200, 50, seed=3, **kwargs)
    assert (train, test) == demo_corpus.select_sentences(clauses, 200, 50, seed=3, **kwargs)
    assert demo_corpus.select_sentences(clauses, 200, 50, seed=4, **kwargs)[1] != test
    assert len(set(train)) == 200 and len(set(test)) == 50 and not set(train) & set(test)
    assert all(4 <= len(s) <= 10 and all(is_cjk(ch) for ch in s) for s in train + test)
    assert len(set("".join(train + test))) <= 300
    # More training sentences leave the test set as it was.
    assert demo_corpus.select_sentences(clauses, 300, 50, seed=3, **kwargs)[1] == test
    with pytest.raises(LitAsrError, match="distinct sentences"):
        demo_corpus.select_sentences(clauses, 10**6, 50, **kwargs)


def test_demo_lm_text_never_holds_a_test_sentence(tmp_path):
    clauses = ["春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "昨夜来风雨声急", "春眠不觉晓", "hello world"]
    path = tmp_path / "lm_text.txt"
    assert demo_corpus.write_lm_text(clauses, ["夜来风雨声"], path) == 3
    # duplicates once, the test sentence and the clause that contains it gone, other text kept
    assert path.read_text(encoding="utf-8").splitlines() == ["春眠不觉晓", "处处闻啼鸟", "hello world"]


def test_demo_reuses_wavs_only_for_the_same_text(tmp_path):
    demo_corpus.build_demo_corpus(tmp_path, ["春眠不觉晓", "处处闻啼鸟"], ["夜来风雨声"], jobs=1)
    first = tmp_path / "wav" / "train" / "00000.wav"
    kept = tmp_path / "wav" / "train" / "00001.wav"
    before = first.stat().st_mtime_ns, kept.stat().st_mtime_ns
    demo_corpus.build_demo_corpus(tmp_path, ["花落知多少", "处处闻啼鸟"], ["夜来风雨声"], jobs=1)
    assert first.stat().st_mtime_ns != before[0] and kept.stat().st_mtime_ns == before[1]
    assert (tmp_path / "train.tsv").read_text(encoding="utf-8").splitlines()[0] == f"{first}\t花落知多少"
    info = soundfile.info(str(first))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_cli_demo_end_to_end(tmp_path, clauses):
    args = ["demo", "--num-train", "12", "--num-test", "4", "--num-samples", "10", "--corpus-dir", "corpus",
            "--out", "ds", "--seed", "7", "--min-duration", "0.1", "--dev-fraction", "0.25"]
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ds = tmp_path / "ds"
    train, dev, test = (_manifest(ds / f"manifest.{s}") for s in ("train", "dev", "test"))
    assert len(train) == 9 and len(dev) == 3 and len(test) == 4
    texts = [{e["text"] for e in split} for split in (train, dev, test)]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    lm_text = set((tmp_path / "corpus" / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    assert not lm_text & (texts[1] | texts[2])  # the LM never reads a dev or test sentence
    degraded = _manifest(ds / "manifest.test_degraded")
    assert [e["text"] for e in degraded] == [e["text"] for e in test]
    assert all(Path(e["audio_filepath"]).parent == tmp_path / "corpus" / "wav" / "test_degraded" for e in degraded)
    assert [e["duration"] for e in degraded] == pytest.approx([e["duration"] for e in test], abs=1e-3)
    assert len(list((tmp_path / "corpus" / "wav" / "train").glob("*.wav"))) == 12
    assert (tmp_path / "ds" / "vocabulary.txt").read_text(encoding="utf-8").startswith("<blank>\n<unk>\n")
    again = _cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and "16 wavs reused, 0 to synthesise" in again.stdout
    assert _manifest(tmp_path / "ds" / "manifest.train") == train
    assert _manifest(ds / "manifest.test_degraded") == degraded
