# Shared by the train/eval launch scripts (source it; it runs nothing by itself):
# absolute paths, the Python to use, existence checks that name the bad argument.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The Python to use: $PYTHON, else the repo's .venv, else python3 (made absolute for msrun's shim).
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

real_path() {
  if [ "${1:0:1}" == "/" ]; then echo "$1"; else realpath -m "$PWD/$1"; fi
}

# Exit codes, as the Python entry points (src/model_utils/errors.py): 2 for a bad argument found
# before any work, 1 for a run that failed, else the entry point's own status.

# need_dir NAME PATH [HINT]: fail with "error: NAME=PATH is not a directory" (exit 2).
need_dir() {
  if [ ! -d "$2" ]; then
    echo "error: $1=$2 is not a directory${3:+ ($3)}" >&2
    exit 2
  fi
}

# need_file NAME PATH [HINT]: fail with "error: NAME=PATH is not a file" (exit 2).
need_file() {
  if [ ! -f "$2" ]; then
    echo "error: $1=$2 is not a file${3:+ ($3)}" >&2
    exit 2
  fi
}

# option_value KEY DEFAULT [ARGS...]: the value of the last --KEY VALUE / --KEY=VALUE in ARGS, else DEFAULT.
option_value() {
  local key=$1 value=$2
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --"$key"=*) value=${1#*=} ;;
      --"$key") if [ $# -ge 2 ]; then value=$2; shift; fi ;;
    esac
    shift
  done
  echo "$value"
}

# new_log NAME: NAME if no such file exists, else NAME with the date and time before its extension,
# so that a run never replaces the log of an earlier one.
new_log() {
  if [ ! -e "$1" ]; then echo "$1"; return; fi
  local stem=${1%.log} stamp
  stamp=$(date +%Y%m%d-%H%M%S)
  if [ ! -e "$stem-$stamp.log" ]; then echo "$stem-$stamp.log"; else echo "$stem-$stamp-$$.log"; fi
}

# run_logged LOG COMMAND...: COMMAND with its output also in LOG; returns COMMAND's exit status and
# names the log when it fails.
run_logged() {
  local log=$1 status
  shift
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  if [ "$status" -ne 0 ]; then
    echo "error: $(basename "$2") failed (exit code $status); see $(real_path "$log")" >&2
  fi
  return "$status"
}

# need_int NAME VALUE MIN: fail unless VALUE is an integer >= MIN (exit 2).
need_int() {
  if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ]; then
    echo "error: $1=$2 must be an integer >= $3" >&2
    exit 2
  fi
}

# config_arg CONFIG_OR_EMPTY DEFAULT_NAME: the absolute path of the YAML to pass as --config_path.
config_arg() {
  local config
  if [ -n "$1" ]; then config=$(real_path "$1"); else config=$ROOT/$2; fi
  need_file CONFIG "$config" "a YAML config such as $ROOT/$2"
  echo "$config"
}

# is_option ARG: true when ARG is a --key (the optional positional arguments end there).
is_option() {
  [ "${1:0:2}" == "--" ]
}

# standalone_train DEVICE_TARGET DEFAULT_CONFIG DATA_DIR [CONFIG] [DEVICE_ID] [--key value ...]
# One process in the foreground on device DEVICE_ID (a --device_target among the options wins);
# output also in ./train.log ($LOG; a new name when it exists); returns train.py's exit status.
standalone_train() {
  local target=$1 default_config=$2 data_dir config device_id log
  shift 2
  data_dir=$(real_path "$1")
  shift
  need_dir DATA_DIR "$data_dir" "expected the training images as DATA_DIR/<class>/<image>"
  config=""
  if [ $# -ge 1 ] && ! is_option "$1"; then config=$1; shift; fi
  config=$(config_arg "$config" "$default_config") || exit $?
  device_id=${DEVICE_ID:-0}
  if [ $# -ge 1 ] && ! is_option "$1"; then device_id=$1; shift; fi
  need_int DEVICE_ID "$device_id" 0
  target=$(option_value device_target "$target" "$@")
  log=$(new_log "${LOG:-train.log}")
  echo "training on $target device $device_id with $config; log: $(real_path "$log")"
  DEVICE_ID=$device_id RANK_ID=0 RANK_SIZE=1 run_logged "$log" "$PYTHON" "$ROOT/train.py" --config_path "$config" \
    --device_target "$target" --is_distributed False --train_dataset_path "$data_dir" "$@"
  exit $?
}

# evaluate DEVICE_TARGET DEFAULT_CONFIG DATA_DIR CKPT [CONFIG] [--key value ...]
# eval.py in the foreground (a --device_target among the options wins); output also in ./eval.log
# ($LOG; a new name when it exists); returns eval.py's exit status.
evaluate() {
  local target=$1 default_config=$2 data_dir ckpt config log
  shift 2
  data_dir=$(real_path "$1")
  ckpt=$(real_path "$2")
  shift 2
  need_dir DATA_DIR "$data_dir" "expected the validation images as DATA_DIR/<class>/<image>"
  need_file CKPT "$ckpt" "a checkpoint written by train.py, e.g. output/shufflenetv1-250_1251.ckpt"
  config=""
  if [ $# -ge 1 ] && ! is_option "$1"; then config=$1; shift; fi
  config=$(config_arg "$config" "$default_config") || exit $?
  target=$(option_value device_target "$target" "$@")
  log=$(new_log "${LOG:-eval.log}")
  echo "evaluating $ckpt on $target with $config; log: $(real_path "$log")"
  run_logged "$log" "$PYTHON" "$ROOT/eval.py" --config_path "$config" --device_target "$target" \
    --eval_dataset_path "$data_dir" --ckpt_path "$ckpt" "$@"
  exit $?
}
