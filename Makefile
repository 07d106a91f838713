# make demo   -> creates .venv, installs torch (CPU build) then xit-dist, runs ray_configs/demo.yaml
# make test   -> same install, then ruff, lint-imports (the layers of DESIGN.md) and the whole test suite
#               (what CI runs through .ci/run)
# GPU users: install your CUDA build of torch into .venv first, then `make install TORCH_SPEC=`
#            (an empty TORCH_SPEC keeps the torch already in the venv).

VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/xit-dist run ray_configs/demo.yaml

test: install
	$(VENV)/bin/ruff check xit_dist tests benchmarks
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

clean:
	rm -rf xit_runs .pytest_cache
