#!/bin/bash
# ONNX accuracy with onnxruntime over an ImageNet-style folder (see infer_onnx.py):
#   bash scripts/run_onnx.sh ONNX_PATH DATA_PATH [DEVICE_TARGET]
# DEVICE_TARGET: CPU (default) or GPU (onnxruntime-gpu). INPUT_FORMAT (environment):
# rgb_normalized (default) or bgr_255 for converted Megvii weights. The output is also
# written to ./infer_onnx.log.
set -uo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "Usage: bash scripts/run_onnx.sh ONNX_PATH DATA_PATH [DEVICE_TARGET]" >&2
  exit 2
fi

get_real_path() {
  if [ "${1:0:1}" == "/" ]; then echo "$1"; else echo "$(realpath -m "$PWD/$1")"; fi
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ONNX_PATH=$(get_real_path "$1")
DATA_PATH=$(get_real_path "$2")
DEVICE_TARGET=${3:-CPU}
INPUT_FORMAT=${INPUT_FORMAT:-rgb_normalized}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

if [ ! -f "$ONNX_PATH" ]; then
  echo "error: ONNX_PATH=$ONNX_PATH is not a file (export one with export.py --file_format ONNX)" >&2
  exit 1
fi
if [ ! -d "$DATA_PATH" ]; then
  echo "error: DATA_PATH=$DATA_PATH is not a directory" >&2
  exit 1
fi
if [ "$DEVICE_TARGET" != "CPU" ] && [ "$DEVICE_TARGET" != "GPU" ]; then
  echo "error: DEVICE_TARGET=$DEVICE_TARGET is not supported; choose CPU or GPU" >&2
  exit 2
fi

"$PYTHON" "$ROOT/infer_onnx.py" --onnx_path "$ONNX_PATH" --dataset_path "$DATA_PATH" \
  --device_target "$DEVICE_TARGET" --input_format "$INPUT_FORMAT" 2>&1 | tee infer_onnx.log
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "error: ONNX inference failed (exit $status); see $(pwd)/infer_onnx.log" >&2
fi
exit "$status"
