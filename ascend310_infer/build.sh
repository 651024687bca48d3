#!/bin/bash
# Build the inference program: bash ascend310_infer/build.sh [MINDSPORE_PATH]
#
# MINDSPORE_PATH (argument or environment) is the folder holding include/api/model.h and
# lib/; without it, the installed MindSpore Lite or MindSpore (Ascend) Python package is
# used. BUILD_DIR (environment, default ascend310_infer/build) receives the program "main".
# With ASCEND_HOME set, the Ascend toolkit's libraries are searched for its dependencies.
set -euo pipefail

if [ $# -gt 1 ]; then
  echo "Usage: bash $0 [MINDSPORE_PATH]" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=${BUILD_DIR:-$HERE/build}
MINDSPORE_PATH=${1:-${MINDSPORE_PATH:-}}
PYTHON=${PYTHON:-python3}

if [ -z "$MINDSPORE_PATH" ]; then
  for package in mindspore_lite mindspore; do
    candidate=$("$PYTHON" -c "import importlib.util, os; s = importlib.util.find_spec('$package'); \
print(os.path.dirname(s.origin) if s and s.origin else '')" 2>/dev/null || true)
    if [ -n "$candidate" ] && [ -f "$candidate/include/api/model.h" ]; then
      MINDSPORE_PATH=$candidate
      break
    fi
  done
fi
if [ -z "$MINDSPORE_PATH" ]; then
  echo "error: no MindSpore inference package found: install MindSpore (Ascend) or MindSpore Lite," \
       "or pass its folder (the one holding include/api/model.h) as MINDSPORE_PATH" >&2
  exit 1
fi
if [ ! -f "$MINDSPORE_PATH/include/api/model.h" ]; then
  echo "error: MINDSPORE_PATH=$MINDSPORE_PATH has no include/api/model.h" >&2
  exit 1
fi
MINDSPORE_PATH=$(cd "$MINDSPORE_PATH" && pwd)

EXTRA_LIB_DIRS=""
if [ -n "${ASCEND_HOME:-}" ]; then
  for dir in "$ASCEND_HOME/ascend-toolkit/latest/lib64" "$ASCEND_HOME/ascend-toolkit/latest/fwkacllib/lib64" \
             "$ASCEND_HOME/ascend-toolkit/latest/acllib/lib64" "$ASCEND_HOME/driver/lib64" \
             "$ASCEND_HOME/acllib/lib64" "$ASCEND_HOME/fwkacllib/lib64"; do
    if [ -d "$dir" ]; then
      EXTRA_LIB_DIRS="${EXTRA_LIB_DIRS:+$EXTRA_LIB_DIRS;}$dir"
    fi
  done
fi

cmake -S "$HERE" -B "$BUILD_DIR" -DMINDSPORE_PATH="$MINDSPORE_PATH" -DEXTRA_LIB_DIRS="$EXTRA_LIB_DIRS"
cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"
echo "built $BUILD_DIR/main"
