"""One way to cut an error to one line: lit_asr.errors.first_line, used everywhere."""

import re
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_asr.errors import first_line

SRC = Path(__file__).resolve().parents[1] / "src" / "lit_asr"


def test_first_line_keeps_the_first_line_or_joins_all():
    exc = RuntimeError("\x1b[31mbad thing\x1b[0m\n  at some place\n")
    assert first_line(exc) == "bad thing"
    assert first_line(exc, keep_all=True) == "bad thing; at some place"
    assert first_line(KeyError("mean is not a file in the archive")) == "mean is not a file in the archive"
    assert first_line(ValueError("")) == "ValueError"


def test_omegaconf_message_becomes_one_line_naming_the_key():
    cfg = OmegaConf.create({"log_dir": "${nope}"})
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        line = first_line(exc, keep_all=True)
    assert "\n" not in line and "nope" in line and "full_key: log_dir" in line


def test_no_other_copy_of_the_one_line_cut():
    # The variants this replaced: a private _one_line, and ad-hoc splitlines()[0] / args[0] cuts.
    pattern = re.compile(r"def _one_line|splitlines\(\)\[0\]|exc\.args\[0\]")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if p.name != "errors.py"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
