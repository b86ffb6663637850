# lit-asr: `make demo` runs the whole embedded demo, `make test` the test suite. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Demo settings (override on the command line: make demo DEMO_ARGS="num_epoch=5")
DEMO_DIR ?= demo_data
DATASET ?= dataset
DEMO_ARGS ?=
# alpha/beta of the demo's beam search are chosen on the dev split from this grid (cached sweep, docs/quality.md);
# DEMO_BEAM is used only for a dataset/ prepared before dev splits (MASR's 2.2/4.3 weigh this small LM too heavily)
SWEEP_ALPHA ?= 0.5,0.7,1.0,1.5
SWEEP_BETA ?= 1,2,3
DEMO_BEAM ?= decoder.alpha=1.0 decoder.beta=2.0
BEAM := decoder=beam_search decoder.lang_model_path=$(DATASET)/lm.arpa

.PHONY: demo demo-en data-en lm-en test test-slow setup sysdeps data train eval lm sweep benchmark clean-demo

setup: sysdeps $(STAMP)

# System packages: libtcmalloc-minimal4 (run.py's allocator, conf/config.yaml `allocator`), espeak-ng (speech
# synthesis for the demos), fortunes-zh and fortunes (real Chinese and English text), sox; chromium,
# chromium-driver and a CJK font for the web page's real-browser test (tests/test_serve_browser.py).
sysdeps:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	[ -f /usr/share/games/fortunes/tang300 ] || missing="$$missing fortunes-zh"; \
	[ -f /usr/share/games/fortunes/wisdom ] || missing="$$missing fortunes"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	ldconfig -p | grep -q libsndfile || missing="$$missing libsndfile1"; \
	ldconfig -p | grep -q libtcmalloc_minimal || missing="$$missing libtcmalloc-minimal4"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# The virtualenv is rebuilt only when setup.cfg changes.
$(STAMP): setup.cfg pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@# pipefail: a failing pip fails the rule; grep only hides pip's "is ignored" notices (and exits 1 when it
	@# has nothing left to print, which is not a failure).
	set -o pipefail; $(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	set -o pipefail; $(PY) -m pip install -q -e ".[dev]" 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -c "import lit_asr, torch, torchaudio, pytorch_lightning, hydra, kenlm, pyctcdecode, visualdl, silero_vad, \
	  fastapi, uvicorn, websockets, httpx, python_multipart, prometheus_client, selenium, sentencepiece, webdataset, \
	  pytest, onnx, onnxruntime, flashlight.lib.text.decoder"
	@touch $(STAMP)

data: setup
	$(PY) scripts/prepare_data.py demo --corpus-dir $(DEMO_DIR) --out $(DATASET)

# A character 4-gram of all fortune text except the test sentences (written by `make data`).
lm: setup
	$(PY) scripts/build_lm.py --text $(DEMO_DIR)/lm_text.txt --order 4 --output $(DATASET)/lm.arpa

# Resumes from models/demo/last_model when it exists; a finished run returns at once.
train: setup
	$(PY) run.py experiment=demo $(DEMO_ARGS)

# Tune alpha/beta on dev, then report test (clean and, when present, degraded) at that point: beam and greedy CER.
# Another model: make eval DEMO_ARGS="use_model=NAME ..." EVAL_DIR=outputs/NAME (so the demo's results stay).
EVAL_DIR ?= outputs/demo
eval: setup
	@set -eo pipefail; \
	if [ -f $(DATASET)/manifest.dev ]; then \
	  $(PY) run.py -m task=eval experiment=demo $(BEAM) test_manifest=$(DATASET)/manifest.dev \
	    decoder.alpha=$(SWEEP_ALPHA) decoder.beta=$(SWEEP_BETA) hydra.sweep.dir=$(EVAL_DIR)/sweep_dev $(DEMO_ARGS); \
	  beam=$$($(PY) scripts/summarize_eval.py --best $(EVAL_DIR)/sweep_dev | head -n 1); \
	  echo "alpha/beta chosen on dev: $$beam"; \
	else \
	  echo "warning: no $(DATASET)/manifest.dev (prepared before dev splits): alpha/beta not tuned, $(DEMO_BEAM)"; \
	  beam="$(DEMO_BEAM)"; \
	fi; \
	runs=$(EVAL_DIR)/eval_beam; \
	$(PY) run.py task=eval experiment=demo $(BEAM) $$beam hydra.run.dir=$(EVAL_DIR)/eval_beam $(DEMO_ARGS); \
	if [ -f $(DATASET)/manifest.test_degraded ]; then \
	  $(PY) run.py task=eval experiment=demo $(BEAM) $$beam test_manifest=$(DATASET)/manifest.test_degraded \
	    hydra.run.dir=$(EVAL_DIR)/eval_beam_degraded $(DEMO_ARGS); \
	  runs="$$runs $(EVAL_DIR)/eval_beam_degraded"; \
	fi; \
	$(PY) scripts/summarize_eval.py $$runs

demo: setup data lm train eval

# The English demo: sentencepiece BPE pieces on espeak-ng English from the fortunes package (docs/tokenizers.md).
DEMO_EN_DIR ?= demo_data_en
DATASET_EN ?= dataset_en

data-en: setup
	$(PY) scripts/prepare_data.py demo --language en --corpus-dir $(DEMO_EN_DIR) --out $(DATASET_EN) \
	  --tokenizer bpe --vocab-size 300 --num-train 3000 --num-test 200

lm-en: setup
	$(PY) scripts/build_lm.py --text $(DEMO_EN_DIR)/lm_text.txt --order 3 --output $(DATASET_EN)/lm.arpa

demo-en: setup data-en lm-en
	$(PY) run.py experiment=demo_en $(DEMO_ARGS)
	$(PY) run.py task=eval experiment=demo_en hydra.run.dir=outputs/demo_en/eval_greedy $(DEMO_ARGS)
	@# alpha/beta not tuned (docs/tokenizers.md); tune them on dataset_en/manifest.dev as `make eval` does for Mandarin
	$(PY) run.py task=eval experiment=demo_en decoder=beam_search decoder.lang_model_path=$(DATASET_EN)/lm.arpa \
	  decoder.alpha=0.5 decoder.beta=1.0 hydra.run.dir=outputs/demo_en/eval_beam $(DEMO_ARGS)

# pytest exits 5 when it collects nothing (e.g. a marker selects no test): not a failure of the code.
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-slow: setup
	$(PY) -m pytest -q -m slow

benchmark: setup
	$(PY) scripts/benchmark.py

clean-demo:
	rm -rf $(DEMO_DIR) $(DATASET) models/demo log outputs multirun .cache
