"""scripts/homophone_floor.py: espeak-ng's syllables, the context-free and LM floors, homophone substitutions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lit_asr.decoding.lm import build_arpa, tokenize_for_lm

ROOT = Path(__file__).resolve().parents[1]


def _manifest(path: Path, texts: list[str]) -> Path:
    lines = [json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0, "text": t}, ensure_ascii=False)
             for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_floors_on_two_homophones_that_only_context_tells_apart(tmp_path):
    # 是 and 事 are both spoken shi4; 是 is the more frequent, but only 事 is ever followed by 情.
    train_texts = ["是的", "是的", "是的", "事情", "事情"]
    train = _manifest(tmp_path / "manifest.train", train_texts)
    test = _manifest(tmp_path / "manifest.test", ["事情"])
    lm = tmp_path / "lm.arpa"
    build_arpa([tokenize_for_lm(t) for t in train_texts], 2, lm)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"reference": "事情", "hypothesis": "是情", "cer": 0.5}, ensure_ascii=False)
                           + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "homophone_floor.py"), "--train", str(train),
                             "--test", str(test), "--lm", str(lm), "--predictions", str(predictions)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "paired characters with syllables in 5/5 train and 1/1 test" in result.stdout
    assert "context-free choice: CER 0.500" in result.stdout  # shi4 -> 是, the frequent one
    assert "+ " + str(lm) + ": CER 0.000" in result.stdout  # the LM knows 事情
    assert "1 one-for-one substitutions, 1 (100%) of them a homophone" in result.stdout


def test_a_missing_lm_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "homophone_floor.py"), "--lm",
                             str(tmp_path / "none.arpa")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: language model not found: {tmp_path / 'none.arpa'} (make lm)"]
