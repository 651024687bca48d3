#!/bin/bash
# ONNX accuracy with onnxruntime over an ImageNet-style folder (see infer_onnx.py):
#   bash scripts/run_onnx.sh ONNX_PATH DATA_PATH [DEVICE_TARGET]
# DEVICE_TARGET: CPU (default) or GPU (onnxruntime-gpu). INPUT_FORMAT (environment):
# rgb_normalized (default) or bgr_255 for converted Megvii weights. The output is also
# written to ./infer_onnx.log ($LOG; a new name when it exists).
set -uo pipefail
USAGE="Usage: bash scripts/run_onnx.sh ONNX_PATH DATA_PATH [DEVICE_TARGET]"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

ONNX_PATH=$(real_path "$1")
DATA_PATH=$(real_path "$2")
DEVICE_TARGET=${3:-CPU}
INPUT_FORMAT=${INPUT_FORMAT:-rgb_normalized}
need_file ONNX_PATH "$ONNX_PATH" "export one with export.py --file_format ONNX"
need_dir DATA_PATH "$DATA_PATH" "expected DATA_PATH/<class>/<image>"
if [ "$DEVICE_TARGET" != "CPU" ] && [ "$DEVICE_TARGET" != "GPU" ]; then
  echo "error: DEVICE_TARGET=$DEVICE_TARGET is not supported; choose CPU or GPU" >&2
  exit 2
fi
LOG=$(new_log "${LOG:-infer_onnx.log}")
echo "ONNX Runtime on $DEVICE_TARGET: $ONNX_PATH over $DATA_PATH; log: $(real_path "$LOG")"
run_logged "$LOG" "$PYTHON" "$ROOT/infer_onnx.py" --onnx_path "$ONNX_PATH" --dataset_path "$DATA_PATH" \
  --device_target "$DEVICE_TARGET" --input_format "$INPUT_FORMAT"
exit $?
