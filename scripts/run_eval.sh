#!/bin/bash
# Evaluate a checkpoint on an Ascend device (DEVICE_ID in the environment, default 0):
#   bash scripts/run_eval.sh DATA_DIR CKPT [CONFIG] [--key value ...]
# DATA_DIR: validation images as DATA_DIR/<class>/<image>. CKPT: a checkpoint of train.py
# (after data-parallel training: one of output/rank_<i>/, normally rank_0). CONFIG: YAML
# (default default_config.yaml). Prints top-1/top-5, appends the result to eval_log.txt next
# to CKPT; the output is also written to ./eval.log ($LOG to change it).
set -uo pipefail
USAGE="Usage: bash scripts/run_eval.sh DATA_DIR CKPT [CONFIG] [--key value ...]"
if [ $# -lt 2 ] || [ "${1:0:2}" == "--" ] || [ "${2:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"
evaluate Ascend default_config.yaml "$@"
