# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv, install torch 2.13.0 (CUDA build where nvidia-smi finds a GPU, CPU build
# otherwise) and the package with its extras; re-running skips what is already installed.
# Where nvidia-smi finds a GPU the `cuda-build` extra adds the CUDA compiler from the package
# registry, so the custom kernels build without a system CUDA toolkit.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.augstudy-installed
DEMO_OUT ?= demo-out
GPU_CHECK_OUT ?= gpu-check-out
# Where no local CPU wheel is set up, point pip at PyTorch's CPU index, e.g.
#   make test TORCH_CPU_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_CPU_INDEX ?=
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
comma := ,
EXTRAS := dev,kaggle$(if $(HAS_GPU),$(comma)cuda-build)

.PHONY: install demo test test-fast lint bench gpu-check cuda-build-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	@if [ -n "$(HAS_GPU)" ]; then \
		echo "NVIDIA GPU found: installing the CUDA build of torch 2.13.0 and the CUDA compiler (augstudy[cuda-build])"; \
		$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0"; \
	else \
		echo "No NVIDIA GPU: installing the CPU build of torch 2.13.0"; \
		$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0" $(TORCH_CPU_INDEX); \
	fi
	$(PY) -m pip install --disable-pip-version-check -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/augstudy demo --out $(DEMO_OUT)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check stylegan2ada augstudy tests bench

# The one device check (bench/gpu_check.py): every GPU figure in one command, at most 8 minutes.
gpu-check: install
	$(PY) bench/gpu_check.py --out $(GPU_CHECK_OUT)

# Compile the CUDA kernels for sm_75/80/86/89/90 with the registry's CUDA compiler (no GPU needed; the
# compiler and torch's CUDA headers are cached in ~/.cache/augstudy/cuda-toolchain); record in bench/.
cuda-build-check: install
	$(PY) bench/cuda_build_check.py --out bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
