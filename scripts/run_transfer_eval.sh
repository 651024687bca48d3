#!/bin/bash
# Evaluate a transfer-learning checkpoint on the validation split of DATASET_PATH (the same
# 80/20 split as scripts/run_transfer.sh) with transfer_config.yaml.
#   bash scripts/run_transfer_eval.sh DATASET_PATH [CKPT] [--key value ...]
# CKPT: default ./transfer_output/shufflenetv1_transfer_best.ckpt (the best epoch of the run).
# --key value: any config key; give the ones the run changed (e.g. --model_size 0.5x
#   --num_classes 3 --image_size 48), since the best checkpoint holds the weights only.
# The result line is also appended to eval_log.txt next to the checkpoint.
set -uo pipefail

if [ $# -lt 1 ] || [ "${1:0:2}" == "--" ]; then
  echo "Usage: bash scripts/run_transfer_eval.sh DATASET_PATH [CKPT] [--key value ...]" >&2
  exit 2
fi

get_real_path() {
  if [ "${1:0:1}" == "/" ]; then echo "$1"; else echo "$(realpath -m "$PWD/$1")"; fi
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATASET_PATH=$(get_real_path "$1")
shift
CKPT=$(get_real_path "transfer_output/shufflenetv1_transfer_best.ckpt")
if [ $# -ge 1 ] && [ "${1:0:2}" != "--" ]; then
  CKPT=$(get_real_path "$1")
  shift
fi
if [ ! -d "$DATASET_PATH" ]; then
  echo "error: DATASET_PATH=$DATASET_PATH is not a directory (expected DATASET_PATH/<class>/<image>)" >&2
  exit 1
fi
if [ ! -f "$CKPT" ]; then
  echo "error: CKPT=$CKPT is not a file (train first with scripts/run_transfer.sh, or pass the checkpoint)" >&2
  exit 1
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

"$PYTHON" "$ROOT/eval.py" --config_path "$ROOT/transfer_config.yaml" --dataset_path "$DATASET_PATH" \
  --ckpt_path "$CKPT" "$@"
status=$?
if [ "$status" -ne 0 ]; then
  echo "error: evaluation failed (exit code $status)" >&2
fi
exit "$status"
