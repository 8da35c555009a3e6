#!/usr/bin/env bash
# GPU smoke test of the vllm backend: generate, score and choose on a LOCAL checkpoint,
# printing throughput. Needs the gpu extra (pip install -e '.[gpu]') and a CUDA GPU.
#
#   scripts/gpu_smoke.sh /models/Qwen3-8B [--n 256] [--max-tokens 256] [--tensor-parallel-size 2]
#
# Any `looptool engines smoke` option may follow the model path (see --help); pass
# --backend hf to compare with transformers on the same machine.
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 MODEL_DIR [looptool engines smoke options]" >&2
  exit 2
fi
model="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[[ -x "$py" ]] || py=python
export HF_HUB_OFFLINE=1  # local paths only: never reach for a hub
exec "$py" -m looptool.cli engines smoke --backend vllm --model "$model" "$@"
