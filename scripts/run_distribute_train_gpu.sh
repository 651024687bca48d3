#!/bin/bash
# Data-parallel training on RANK_SIZE GPUs of this machine, launched with OpenMPI's mpirun:
#   bash scripts/run_distribute_train_gpu.sh RANK_SIZE DATA_DIR [CONFIG] [--key value ...]
# DATA_DIR: training images as DATA_DIR/<class>/<image>. CONFIG: YAML (default
#   gpu_default_config.yaml, 8 GPUs x batch 128, lr_max 0.5; scale lr_max with the total batch, see
#   README). --key value: any config key (they win over CONFIG).
# Needs OpenMPI (mpirun on PATH, or MPIRUN=/path/to/mpirun) and NCCL; MindSpore takes each rank's
# GPU from its local rank (CUDA_VISIBLE_DEVICES picks which GPUs). Runs in the background in
# ./train_parallel_gpu: all ranks' output in train_parallel_gpu/train.log, each rank's alone in
# train_parallel_gpu/mpi_logs/ (new names when an earlier run's logs are there), checkpoints in
# <save_ckpt_path>/rank_<i> (./output, relative to train_parallel_gpu).
set -uo pipefail
USAGE="Usage: bash scripts/run_distribute_train_gpu.sh RANK_SIZE DATA_DIR [CONFIG] [--key value ...]"
if [ $# -lt 2 ] || [ "${1:0:2}" == "--" ] || [ "${2:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

RANK_SIZE=$1
DATA_DIR=$(real_path "$2")
shift 2
need_int RANK_SIZE "$RANK_SIZE" 1
need_dir DATA_DIR "$DATA_DIR" "expected the training images as DATA_DIR/<class>/<image>"
CONFIG=""
if [ $# -ge 1 ] && ! is_option "$1"; then CONFIG=$1; shift; fi
CONFIG=$(config_arg "$CONFIG" gpu_default_config.yaml) || exit $?
MPIRUN=${MPIRUN:-mpirun}
if ! command -v "$MPIRUN" > /dev/null; then
  echo "error: MPIRUN=$MPIRUN is not an executable on PATH; install OpenMPI (MindSpore launches GPU data" \
    "parallel with mpirun) or set MPIRUN=/path/to/mpirun" >&2
  exit 1
fi
MPI_OPTIONS=()
if [ "$(id -u)" -eq 0 ]; then MPI_OPTIONS+=(--allow-run-as-root); fi

WORK=$PWD/train_parallel_gpu
mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1
LOG=train.log
MPI_LOGS=mpi_logs
if [ -e "$LOG" ] || [ -e "$MPI_LOGS" ]; then  # an earlier run's: new names, one date and time for both
  STAMP=$(date +%Y%m%d-%H%M%S)
  LOG=train-$STAMP.log
  MPI_LOGS=mpi_logs-$STAMP
fi
nohup "$MPIRUN" -n "$RANK_SIZE" "${MPI_OPTIONS[@]}" --output-filename "$MPI_LOGS" --merge-stderr-to-stdout \
  "$PYTHON" "$ROOT/train.py" --config_path "$CONFIG" --device_target GPU --is_distributed True \
  --train_dataset_path "$DATA_DIR" "$@" > "$LOG" 2>&1 &
echo "launched $RANK_SIZE ranks on $(option_value device_target GPU "$@") with $MPIRUN (config $CONFIG): pid $!;" \
  "log $WORK/$LOG," \
  "per rank $WORK/$MPI_LOGS/"
