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
# alpha/beta for the demo's beam search: the best point of a sweep on the demo model (README); MASR's 2.2/4.3
# weigh this small LM too heavily
DEMO_BEAM ?= decoder.alpha=1.0 decoder.beta=2.0

.PHONY: demo test test-slow setup sysdeps data train eval lm sweep benchmark clean-demo

setup: sysdeps $(STAMP)

# System packages: espeak-ng (speech synthesis for the demo), fortunes-zh (real Chinese text), sox.
sysdeps:
	@missing=""; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	[ -f /usr/share/games/fortunes/tang300 ] || missing="$$missing fortunes-zh"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	ldconfig -p | grep -q libsndfile || missing="$$missing libsndfile1"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# The virtualenv is rebuilt only when setup.cfg changes.
$(STAMP): setup.cfg pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import lit_asr, torch, torchaudio, pytorch_lightning, hydra, kenlm, pyctcdecode, visualdl, flashlight.lib.text.decoder"
	@touch $(STAMP)

data: setup
	$(PY) scripts/prepare_data.py demo --corpus-dir $(DEMO_DIR) --out $(DATASET)

# A character 4-gram of all fortune text except the test sentences (written by `make data`).
lm: setup
	$(PY) scripts/build_lm.py --text $(DEMO_DIR)/lm_text.txt --order 4 --output $(DATASET)/lm.arpa

# Resumes from models/demo/last_model when it exists; a finished run returns at once.
train: setup
	$(PY) run.py experiment=demo $(DEMO_ARGS)

eval: setup
	$(PY) run.py task=eval experiment=demo hydra.run.dir=outputs/demo/eval_greedy $(DEMO_ARGS)
	$(PY) run.py task=eval experiment=demo decoder=beam_search decoder.lang_model_path=$(DATASET)/lm.arpa \
	  $(DEMO_BEAM) hydra.run.dir=outputs/demo/eval_beam $(DEMO_ARGS)
	$(PY) scripts/summarize_eval.py outputs/demo/eval_greedy outputs/demo/eval_beam

demo: setup data lm train eval

# pytest exits 5 when it collects nothing (e.g. a marker selects no test): not a failure of the code.
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-slow: setup
	$(PY) -m pytest -q -m slow

benchmark: setup
	$(PY) scripts/benchmark.py

clean-demo:
	rm -rf $(DEMO_DIR) $(DATASET) models/demo log outputs multirun .cache
