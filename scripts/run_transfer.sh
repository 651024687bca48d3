#!/bin/bash
# Transfer learning on CPU: fine-tune ShuffleNetV1 on one folder of class sub-folders
# (flower_photos-style, split 80/20 per class) with transfer_config.yaml.
#   bash scripts/run_transfer.sh DATASET_PATH [PRETRAINED_CKPT] [--key value ...]
# PRETRAINED_CKPT: the ImageNet checkpoint to start from (default: transfer_config.yaml's
#   ./pretrained/shufflenetv1_imagenet2012.ckpt; when that file is missing, training starts
#   from scratch and the log says so); "" = from scratch.
# --key value: any config key, e.g. --num_classes 5 --epoch_size 30 --freeze_backbone True.
# Paths in transfer_config.yaml (./pretrained, ./transfer_output) are relative to the
# folder you run this from. The output is also written to ./transfer_train.log
# (LOG in the environment to change it).
set -uo pipefail

if [ $# -lt 1 ] || [ "${1:0:2}" == "--" ]; then
  echo "Usage: bash scripts/run_transfer.sh DATASET_PATH [PRETRAINED_CKPT] [--key value ...]" >&2
  exit 2
fi

get_real_path() {
  if [ "${1:0:1}" == "/" ]; then echo "$1"; else echo "$(realpath -m "$PWD/$1")"; fi
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATASET_PATH=$(get_real_path "$1")
shift
if [ ! -d "$DATASET_PATH" ]; then
  echo "error: DATASET_PATH=$DATASET_PATH is not a directory (expected DATASET_PATH/<class>/<image>)" >&2
  exit 1
fi
RESUME=()
if [ $# -ge 1 ] && [ "${1:0:2}" != "--" ]; then
  if [ -z "$1" ]; then
    RESUME=(--resume "")
  else
    PRETRAINED_CKPT=$(get_real_path "$1")
    if [ ! -f "$PRETRAINED_CKPT" ]; then
      echo "error: PRETRAINED_CKPT=$PRETRAINED_CKPT is not a file (get shufflenetv1_imagenet2012 from MindSpore Hub, see README, or pass \"\" to train from scratch)" >&2
      exit 1
    fi
    RESUME=(--resume "$PRETRAINED_CKPT")
  fi
  shift
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
LOG=${LOG:-transfer_train.log}

"$PYTHON" "$ROOT/train.py" --config_path "$ROOT/transfer_config.yaml" --dataset_path "$DATASET_PATH" \
  "${RESUME[@]}" "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "error: training failed (exit code $status); see $LOG" >&2
fi
exit "$status"
