#!/bin/bash
# Transfer learning on CPU: fine-tune ShuffleNetV1 on one folder of class sub-folders
# (flower_photos-style, split 80/20 per class) with transfer_config.yaml (is_transfer True).
#   bash scripts/run_transfer.sh DATASET_PATH [PRETRAINED_CKPT] [--key value ...]
# PRETRAINED_CKPT: the ImageNet checkpoint to start from (default: transfer_config.yaml's
#   ./pretrained/shufflenetv1_imagenet2012.ckpt; when that file is missing, training starts
#   from scratch and the log says so); "" = from scratch.
# --key value: any config key, e.g. --num_classes 5 --epoch_size 30 --freeze_backbone True.
# Paths in transfer_config.yaml (./pretrained, ./transfer_output) are relative to the
# folder you run this from; a second run into ./transfer_output is refused (continue it with
# --resume auto, or pass another --save_ckpt_path). The output is also written to
# ./transfer_train.log (LOG in the environment to change it; a new name when it exists).
set -uo pipefail
USAGE="Usage: bash scripts/run_transfer.sh DATASET_PATH [PRETRAINED_CKPT] [--key value ...]"
if [ $# -lt 1 ] || [ "${1:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

DATASET_PATH=$(real_path "$1")
shift
need_dir DATASET_PATH "$DATASET_PATH" "expected DATASET_PATH/<class>/<image>"
RESUME=()
if [ $# -ge 1 ] && ! is_option "$1"; then
  if [ -z "$1" ]; then
    RESUME=(--resume "")
  else
    PRETRAINED_CKPT=$(real_path "$1")
    need_file PRETRAINED_CKPT "$PRETRAINED_CKPT" \
      "get shufflenetv1_imagenet2012 from MindSpore Hub, see docs/pretrained.md, or pass \"\" to train from scratch"
    RESUME=(--resume "$PRETRAINED_CKPT")
  fi
  shift
fi
LOG=$(new_log "${LOG:-transfer_train.log}")
echo "transfer learning on $(option_value device_target CPU "$@") with $ROOT/transfer_config.yaml; log: $(real_path "$LOG")"
run_logged "$LOG" "$PYTHON" "$ROOT/train.py" --config_path "$ROOT/transfer_config.yaml" \
  --dataset_path "$DATASET_PATH" "${RESUME[@]}" "$@"
exit $?
