"""Performance benchmark (the project's issue 7): compute ceiling, training step, input pipeline, padding,
decoding and decoder sweeps, measured in one run and written as JSON and Markdown (scripts/benchmark.py)."""

from lit_asr.benchmark.report import write_report
from lit_asr.benchmark.runner import DEFAULT_SECTIONS, SECTIONS, Settings, run_benchmark

__all__ = ["DEFAULT_SECTIONS", "SECTIONS", "Settings", "run_benchmark", "write_report"]
