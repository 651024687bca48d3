#!/bin/bash
# Data-parallel training on the CPU cores of this machine with MindSpore's own launcher, msrun:
#   bash scripts/run_distribute_train_cpu.sh WORKERS DATA_DIR [CONFIG] [--key value ...]
# WORKERS: number of ranks (processes); each trains on 1/WORKERS of DATA_DIR with batch_size
#   images per step, and the gradients are averaged over the ranks every step.
# DATA_DIR: training images as DATA_DIR/<class>/<image>. CONFIG: YAML (default default_config.yaml,
#   run with --device_target CPU, which trains in float32; scale lr_max with the total batch, see
#   docs/distributed.md).
# --key value: any config key (they win over CONFIG and the CPU settings above).
# Runs in the foreground and returns msrun's exit status. Per-rank logs: $LOG_DIR/worker_<rank>.log
# (default ./msrun_log, or ./msrun_log-<date>-<time> when an earlier run's logs are there);
# checkpoints: <save_ckpt_path>/rank_<rank> (./output by default).
# MASTER_PORT: the scheduler's port on 127.0.0.1 (default: a free port).
set -uo pipefail
USAGE="Usage: bash scripts/run_distribute_train_cpu.sh WORKERS DATA_DIR [CONFIG] [--key value ...]"
if [ $# -lt 2 ] || [ "${1:0:2}" == "--" ] || [ "${2:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

WORKERS=$1
DATA_DIR=$(real_path "$2")
shift 2
need_int WORKERS "$WORKERS" 1
need_dir DATA_DIR "$DATA_DIR" "expected the training images as DATA_DIR/<class>/<image>"
CONFIG=""
if [ $# -ge 1 ] && ! is_option "$1"; then CONFIG=$1; shift; fi
CONFIG=$(config_arg "$CONFIG" default_config.yaml) || exit $?
LOG_DIR=$(real_path "${LOG_DIR:-msrun_log}")
if [ -d "$LOG_DIR" ] && [ -n "$(ls -A "$LOG_DIR")" ]; then LOG_DIR=$LOG_DIR-$(date +%Y%m%d-%H%M%S); fi
mkdir -p "$LOG_DIR" || exit 1
if [ "$WORKERS" -gt "$(nproc)" ]; then
  echo "warning: WORKERS=$WORKERS is more than this machine's $(nproc) CPU cores; the ranks will share cores"
fi
PY=$(command -v "$PYTHON") || { echo "error: PYTHON=$PYTHON is not an executable" >&2; exit 1; }
MASTER_PORT=${MASTER_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
need_int MASTER_PORT "$MASTER_PORT" 1024

# msrun starts every process as `python SCRIPT ...` from PATH: put this Python first under that name.
SHIM=$(mktemp -d) || exit 1
trap 'rm -rf "$SHIM"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" > "$SHIM/python"
chmod +x "$SHIM/python"

echo "msrun: $WORKERS ranks on $(option_value device_target CPU "$@"), master port $MASTER_PORT, config $CONFIG;" \
  "per-rank logs $LOG_DIR/worker_<rank>.log"
PATH="$SHIM:$PATH" "$PY" -m mindspore.parallel.cluster.run --worker_num="$WORKERS" \
  --local_worker_num="$WORKERS" --master_addr=127.0.0.1 --master_port="$MASTER_PORT" --join=True \
  --log_dir="$LOG_DIR" "$ROOT/train.py" --config_path "$CONFIG" --device_target CPU \
  --is_distributed True --train_dataset_path "$DATA_DIR" "$@"
status=$?
if [ "$status" -ne 0 ]; then
  echo "error: distributed training failed (exit code $status); see $LOG_DIR/worker_<rank>.log" >&2
fi
exit "$status"
