# upconv: `make demo` runs the main job, `make test` runs the tests.
# Both bootstrap a local virtual environment on first use; later runs reuse it.
#
# TORCH_REQ pins PyTorch and is installed *before* the project, so pip never resolves an
# unpinned torch (which would pull a multi-GB CUDA build). Override it elsewhere, e.g.
#   make test TORCH_REQ="torch==2.5.1"
PYTHON    ?= python3
VENV      ?= .venv
TORCH_REQ ?= torch==2.13.0
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.upconv-installed

.PHONY: demo test bench bench-heldout bench-small bench-models bench-gpu lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_REQ)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# spandrel (the model zoo, for checkpoints from disk) without its torchvision requirement:
	# PyPI's torchvision does not load beside the CPU torch pin (tests/stubs/README.md)
	$(BIN)/python -m pip install --quiet --no-deps "spandrel==0.4.2"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/upconv demo

# one pytest worker per core (pytest-xdist): most of the suite's time is numba compiling kernel
# variants, one core each; `pytest -n 0` runs in a single process
test: $(STAMP)
	$(BIN)/python -m pytest -n auto

# every figure is measured in a default process: no OpenMP (or other) tuning variables
bench: $(STAMP)
	$(BIN)/upconv bench --repeats 11

# the held-out layers H1–H6 (never tuned on); writes benchmarks/results/heldout.{md,json}
bench-heldout: $(STAMP)
	$(BIN)/upconv bench --zoo heldout --repeats 11

# tile- and crop-sized inputs S1–S3, back to back (no idle gap); writes small.{md,json}
bench-small: $(STAMP)
	$(BIN)/upconv bench --zoo small --repeats 21

# whole networks, trained vs converted, eager and torch.compile, 100 rounds per mode in each of
# five default processes and two more that keep freed memory (extra rows); writes
# models.{md,json} (~30 min)
bench-models: $(STAMP)
	$(BIN)/upconv bench --models all --repeats 100 --processes 5 --kept-processes 2

# the GPU suite on a CUDA machine (docs/gpu.md); writes benchmarks/results/gpu-<device>.{md,json}.
# benchmarks/gpu_check.sh OUTDIR runs it with the CUDA tests and time limits, installing nothing.
bench-gpu: $(STAMP)
	$(BIN)/upconv bench --device cuda

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# also numba's on-disk kernel cache, which numba never prunes: it keeps the variants of
# every earlier source version (hundreds of MB in a working checkout)
clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .hypothesis
	find src -name '*.nbi' -delete -o -name '*.nbc' -delete
