#!/bin/bash
# Ascend 310 inference: build -> preprocess -> infer -> postprocess.
#   bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_FILE DEVICE_ID
# MINDIR_PATH: exported with batch size 1 (python export.py ... --file_format MINDIR
#   --batch_size 1 --file_name shufflenetv1_bs1).
# DATA_PATH:   ImageNet-style folder ROOT/<class>/<image>.
# LABEL_FILE:  its img_id:label lines (python tools/make_label_file.py --data_path DATA_PATH
#   --output LABEL_FILE).
# Environment (optional): DEVICE_TYPE Ascend310 (default) or CPU; IMAGE_SIZE (224, as
# exported); INPUT_FORMAT rgb_normalized (default) or bgr_255; OUTPUT_DIR (./infer_310, which
# must not hold the results of an earlier run) receives preprocess_Result/, result_Files/, the
# logs and acc.log; MINDSPORE_PATH and BUILD_DIR are passed to ascend310_infer/build.sh.
set -uo pipefail
USAGE="Usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_FILE DEVICE_ID"
if [ $# != 4 ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

MINDIR_PATH=$(real_path "$1")
DATA_PATH=$(real_path "$2")
LABEL_FILE=$(real_path "$3")
DEVICE_ID=$4
DEVICE_TYPE=${DEVICE_TYPE:-Ascend310}
IMAGE_SIZE=${IMAGE_SIZE:-224}
INPUT_FORMAT=${INPUT_FORMAT:-rgb_normalized}
OUTPUT_DIR=$(real_path "${OUTPUT_DIR:-infer_310}")
export BUILD_DIR=${BUILD_DIR:-$ROOT/ascend310_infer/build}
export PYTHON

need_file MINDIR_PATH "$MINDIR_PATH" "export it with export.py --file_format MINDIR --batch_size 1"
need_dir DATA_PATH "$DATA_PATH"
need_file LABEL_FILE "$LABEL_FILE" "write it with: python tools/make_label_file.py --data_path $DATA_PATH --output $LABEL_FILE"
for earlier in acc.log result_Files preprocess_Result; do
  if [ -e "$OUTPUT_DIR/$earlier" ]; then
    echo "error: OUTPUT_DIR=$OUTPUT_DIR already holds the results of a run ($earlier); set OUTPUT_DIR to a new" \
      "folder, so that they are not replaced" >&2
    exit 2
  fi
done
if ! [[ "$DEVICE_ID" =~ ^[0-9]+$ ]]; then
  echo "error: DEVICE_ID=$DEVICE_ID is not a device number (0, 1, ...)" >&2
  exit 2
fi
if [ "$DEVICE_TYPE" != "Ascend310" ] && [ "$DEVICE_TYPE" != "CPU" ]; then
  echo "error: DEVICE_TYPE=$DEVICE_TYPE is not supported; choose Ascend310 or CPU" >&2
  exit 2
fi
if ! [[ "$IMAGE_SIZE" =~ ^[0-9]+$ ]]; then
  echo "error: IMAGE_SIZE=$IMAGE_SIZE is not a number of pixels" >&2
  exit 2
fi

# The Ascend toolkit's libraries and operator packages, where installed.
if [ -n "${ASCEND_HOME:-}" ] && [ -d "$ASCEND_HOME/ascend-toolkit/latest" ]; then
  export ASCEND_TOOLKIT_HOME=$ASCEND_HOME/ascend-toolkit/latest
  export LD_LIBRARY_PATH=$ASCEND_TOOLKIT_HOME/lib64:$ASCEND_TOOLKIT_HOME/fwkacllib/lib64:$ASCEND_HOME/driver/lib64:${LD_LIBRARY_PATH:-}
  export ASCEND_OPP_PATH=$ASCEND_TOOLKIT_HOME/opp
  export PATH=$ASCEND_TOOLKIT_HOME/fwkacllib/ccec_compiler/bin:$ASCEND_TOOLKIT_HOME/compiler/ccec_compiler/bin:$PATH
fi

mkdir -p "$OUTPUT_DIR" || exit 1
cd "$OUTPUT_DIR" || exit 1
echo "MINDIR_PATH=$MINDIR_PATH DATA_PATH=$DATA_PATH LABEL_FILE=$LABEL_FILE DEVICE_ID=$DEVICE_ID DEVICE_TYPE=$DEVICE_TYPE"
echo "output in $OUTPUT_DIR"

fail() {
  echo "error: $1 failed; see $OUTPUT_DIR/$2" >&2
  # The log's own error lines, else its end.
  { grep -E "error|ERROR|Error|exception" "$OUTPUT_DIR/$2" || tail -n 5 "$OUTPUT_DIR/$2"; } | tail -n 5 >&2
  exit 1
}

echo "1/4 build ($BUILD_DIR/main)"
bash "$ROOT/ascend310_infer/build.sh" > build.log 2>&1 || fail "building the inference program" build.log

echo "2/4 preprocess"
"$PYTHON" "$ROOT/preprocess.py" --data_path "$DATA_PATH" --output_path "$OUTPUT_DIR/preprocess_Result" \
  --image_size "$IMAGE_SIZE" --input_format "$INPUT_FORMAT" > preprocess.log 2>&1 || fail "preprocessing" preprocess.log

echo "3/4 infer"
"$BUILD_DIR/main" --mindir_path="$MINDIR_PATH" --input_path="$OUTPUT_DIR/preprocess_Result" \
  --result_path="$OUTPUT_DIR/result_Files" --device_type="$DEVICE_TYPE" --device_id="$DEVICE_ID" > infer.log 2>&1 \
  || fail "inference" infer.log
grep "average time" infer.log

echo "4/4 postprocess"
"$PYTHON" "$ROOT/postprocess.py" --result_path "$OUTPUT_DIR/result_Files" --label_file "$LABEL_FILE" \
  --log_path "$OUTPUT_DIR/acc.log" > postprocess.log 2>&1 || fail "postprocessing" postprocess.log
cat "$OUTPUT_DIR/acc.log"
