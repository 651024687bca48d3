#!/bin/bash
# Evaluate a transfer-learning checkpoint on the validation split of DATASET_PATH (the same
# 80/20 split as scripts/run_transfer.sh) with transfer_config.yaml.
#   bash scripts/run_transfer_eval.sh DATASET_PATH [CKPT] [--key value ...]
# CKPT: default ./transfer_output/shufflenetv1_transfer_best.ckpt (the best epoch of the run).
# The network (model_size, num_classes, ...) is the one the checkpoint records. --key value: any
# config key. The result line is also appended to eval_log.txt next to the checkpoint; the output
# is also written to ./transfer_eval.log ($LOG; a new name when it exists).
set -uo pipefail
USAGE="Usage: bash scripts/run_transfer_eval.sh DATASET_PATH [CKPT] [--key value ...]"
if [ $# -lt 1 ] || [ "${1:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

DATASET_PATH=$(real_path "$1")
shift
CKPT=$(real_path "transfer_output/shufflenetv1_transfer_best.ckpt")
if [ $# -ge 1 ] && ! is_option "$1"; then
  CKPT=$(real_path "$1")
  shift
fi
need_dir DATASET_PATH "$DATASET_PATH" "expected DATASET_PATH/<class>/<image>"
need_file CKPT "$CKPT" "train first with scripts/run_transfer.sh, or pass the checkpoint"
LOG=$(new_log "${LOG:-transfer_eval.log}")
echo "evaluating $CKPT on $(option_value device_target CPU "$@") with $ROOT/transfer_config.yaml; log: $(real_path "$LOG")"
run_logged "$LOG" "$PYTHON" "$ROOT/eval.py" --config_path "$ROOT/transfer_config.yaml" \
  --dataset_path "$DATASET_PATH" --ckpt_path "$CKPT" "$@"
exit $?
