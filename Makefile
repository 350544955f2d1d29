# Two entry points for a newcomer (see README): `make demo` and `make test`.
# Both create ./.venv and install the project from constraints.txt (CPU torch 2.13.0, pinned set).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE := 1

.PHONY: install demo profile test test-all bench bench-gpu clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m pipeline.demo --demo --out demo_out --workers 2

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

profile: install
	$(PY) -m dynet_model.profile --models dynet-s dynet-l promptir dsrir --size 224 --repeats 3

bench: install
	$(PY) benchmarks/model_speed.py --out benchmarks/results/model_speed_cpu.json

# needs a CUDA torch in $(PYTHON) (not the CPU .venv); ~8 min on one H100/H200 -> benchmarks/results/*_gpu*.json
bench-gpu:
	PYTHON=$(PYTHON) bash benchmarks/gpu_suite.sh

clean:
	rm -rf $(VENV) build *.egg-info
