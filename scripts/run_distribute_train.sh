#!/bin/bash
# Data-parallel training on the Ascend devices of this server, listed in an HCCL rank table:
#   bash scripts/run_distribute_train.sh RANK_TABLE_FILE DATA_DIR [CONFIG] [--key value ...]
# RANK_TABLE_FILE: the JSON rank table (make it with hccl_tools.py, see README; format 1.0 with
#   server_list, or the older 0.x with group_list); RANK_SIZE is the number of devices it lists. With a table of
#   several servers, run this on each server with SERVER_ID=<this server's server_id>.
# DATA_DIR: training images as DATA_DIR/<class>/<image>. CONFIG: YAML (default default_config.yaml,
#   8 devices x batch 128, lr_max 0.5; scale lr_max with the total batch, see README).
# --key value: any config key (they win over CONFIG).
# Each rank runs in the background in its own working folder ./train_parallel<RANK_ID> (kept between
# runs) with RANK_ID, DEVICE_ID and RANK_SIZE set; its output goes to train_parallel<RANK_ID>/train.log
# (a new name when an earlier run's log is there), its checkpoints to <save_ckpt_path>/rank_<RANK_ID>
# (./output, relative to the working folder).
set -uo pipefail
USAGE="Usage: bash scripts/run_distribute_train.sh RANK_TABLE_FILE DATA_DIR [CONFIG] [--key value ...]"
if [ $# -lt 2 ] || [ "${1:0:2}" == "--" ] || [ "${2:0:2}" == "--" ]; then echo "$USAGE" >&2; exit 2; fi
source "$(dirname "$0")/common.sh"

RANK_TABLE_FILE=$(real_path "$1")
DATA_DIR=$(real_path "$2")
shift 2
need_file RANK_TABLE_FILE "$RANK_TABLE_FILE" "make the rank table with hccl_tools.py, see README"
need_dir DATA_DIR "$DATA_DIR" "expected the training images as DATA_DIR/<class>/<image>"
CONFIG=""
if [ $# -ge 1 ] && ! is_option "$1"; then CONFIG=$1; shift; fi
CONFIG=$(config_arg "$CONFIG" default_config.yaml) || exit $?

# "RANK_SIZE" then one "DEVICE_ID RANK_ID" line per device of this server.
DEVICES=$("$PYTHON" - "$RANK_TABLE_FILE" "${SERVER_ID:-}" <<'PY'
import json
import sys

path, server_id = sys.argv[1], sys.argv[2]
def fail(message):
    print(f"error: RANK_TABLE_FILE={path} {message}", file=sys.stderr)
    sys.exit(2)
try:
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
except (OSError, ValueError) as exc:
    fail(f"is not a readable JSON rank table ({exc})")
servers = table.get("server_list") if isinstance(table, dict) else None
groups = table.get("group_list") if isinstance(table, dict) else None
if servers:  # format 1.0, what hccl_tools.py writes
    try:
        ranks = [(s.get("server_id", ""), int(d["device_id"]), int(d["rank_id"]))
                 for s in servers for d in s["device"]]
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"has a server without a 'device' list of device_id/rank_id integers ({exc!r})")
elif groups:  # the older format 0.x: group_list -> instance_list -> devices
    try:
        ranks = [(i.get("server_id", ""), int(i["devices"][0]["device_id"]), int(i["rank_id"]))
                 for g in groups for i in g["instance_list"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        fail(f"has a group_list whose instances lack rank_id/devices[0].device_id ({exc!r})")
    servers = [{"server_id": s} for s in dict.fromkeys(r[0] for r in ranks)]
else:
    ranks = []
if not ranks:
    fail("lists no devices: expected a 'server_list' (rank table format 1.0, as hccl_tools.py writes) "
         "or a 'group_list' (format 0.x); make it with hccl_tools.py, see README")
if sorted(r for _, _, r in ranks) != list(range(len(ranks))):
    fail(f"has rank_ids {sorted(r for _, _, r in ranks)}; expected 0..{len(ranks) - 1}, each once")
ids = [s.get("server_id", "") for s in servers]
if len(servers) > 1 and server_id not in ids:
    fail(f"lists {len(servers)} servers ({', '.join(ids)}); run this script on each of them with "
         "SERVER_ID=<that server's server_id>")
local = [(d, r) for s, d, r in ranks if len(servers) == 1 or s == server_id]
print(len(ranks))
for device_id, rank_id in local:
    print(device_id, rank_id)
PY
) || exit $?
RANK_SIZE=$(echo "$DEVICES" | head -n 1)

export RANK_TABLE_FILE MINDSPORE_HCCL_CONFIG_PATH=$RANK_TABLE_FILE RANK_SIZE
echo "launching $(($(echo "$DEVICES" | wc -l) - 1)) of $RANK_SIZE ranks on $(option_value device_target Ascend "$@")" \
  "(rank table $RANK_TABLE_FILE, config $CONFIG)"
while read -r device_id rank_id; do
  work=$PWD/train_parallel$rank_id
  mkdir -p "$work" || exit 1
  (
    cd "$work" || exit 1
    log=$(new_log train.log)
    DEVICE_ID=$device_id RANK_ID=$rank_id nohup "$PYTHON" "$ROOT/train.py" --config_path "$CONFIG" \
      --device_target Ascend --is_distributed True --train_dataset_path "$DATA_DIR" "$@" > "$log" 2>&1 &
    echo "rank $rank_id on device $device_id: pid $!, log $work/$log"
  ) || exit 1
done < <(echo "$DEVICES" | tail -n +2)
echo "all ranks started in the background; follow them with: tail -f $PWD/train_parallel*/train*.log"
