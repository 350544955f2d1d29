# Two entry points for a newcomer (see README): `make demo` and `make test`.
# Both create ./.venv and install the project from constraints.txt (CPU torch 2.13.0, pinned set).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export HF_HUB_OFFLINE := 1

.PHONY: install demo profile test test-all bench bench-score bench-gpu-score clean

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

bench-score: install
	$(PY) benchmarks/curation_speed.py --engines fast pyiqa --device cpu --size 1024 --metrics niqe,brisque,nima --out benchmarks/results/curation_speed_cpu.json

# on a machine with a CUDA GPU (torch with CUDA): both engines, same images, rates per GPU-second
bench-gpu-score: install
	$(PY) benchmarks/curation_speed.py --engines fast pyiqa --device cuda --size 1024 --metrics niqe,brisque,nima --out benchmarks/results/curation_speed_gpu.json

clean:
	rm -rf $(VENV) build *.egg-info
