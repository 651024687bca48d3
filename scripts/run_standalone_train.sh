#!/bin/bash
# Train on one Ascend device, in the foreground:
#   bash scripts/run_standalone_train.sh DATA_DIR [CONFIG] [DEVICE_ID] [--key value ...]
# DATA_DIR: training images as DATA_DIR/<class>/<image>. CONFIG: YAML (default
# default_config.yaml; "" keeps the default). DEVICE_ID: default $DEVICE_ID or 0.
# --key value: any config key (they win over CONFIG). Checkpoints go to save_ckpt_path
# (./output by default); the output is also written to ./train.log ($LOG to change it).
set -uo pipefail
USAGE="Usage: bash scripts/run_standalone_train.sh DATA_DIR [CONFIG] [DEVICE_ID] [--key value ...]"
if [ $# -lt 1 ] || [ "${1:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"
standalone_train Ascend default_config.yaml "$@"
