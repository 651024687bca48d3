"""Data-parallel training: the sharding of the training data, a real 2-rank run on CPU through
scripts/run_distribute_train_cpu.sh (msrun), and the argument handling of the Ascend, GPU,
standalone and evaluation launch scripts (no Ascend or GPU here: those only up to the launch)."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

import src.dataset as dataset_module
from src.synthetic import make_shapes_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
IMAGES, BATCH, RANKS, EPOCHS = 32, 4, 2, 2
STEPS = IMAGES // (BATCH * RANKS)  # per rank and epoch
# PyNative with MindSpore's own convolutions: two ranks on 2 cores spend most of a GRAPH-mode run compiling
# (and the native kernels' threads of two ranks crowd each other there); the data parallelism is the same.
NET = ["--model_size", "0.5x", "--group", "3", "--num_classes", "2", "--image_size", "32", "--conv_impl", "plain",
       "--mode", "PYNATIVE"]
TRAIN = NET + ["--batch_size", str(BATCH), "--epoch_size", str(EPOCHS), "--lr_max", "0.01", "--warmup_epochs", "0",
               "--keep_checkpoint_max", "2", "--seed", "1", "--save_ckpt_path", "out"]
EVERY = 3  # a recovery checkpoint every 3 steps (steps 3, 6 of the 8)
LOGGED = ["--log_interval", "1", "--save_checkpoint_steps", str(EVERY), "--exact_data_resume", "True"]
FINAL = f"shufflenetv1-{EPOCHS}_{STEPS}.ckpt"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_shapes_dataset(str(root), num_classes=2, train_per_class=IMAGES // 2, val_per_class=4,
                               image_size=32)


def file_hashes(folder):
    """sha1 of each image's bytes -> its path relative to ``folder``."""
    out = {}
    for cls in sorted(os.listdir(folder)):
        for name in sorted(os.listdir(os.path.join(folder, cls))):
            with open(os.path.join(folder, cls, name), "rb") as fh:
                out[hashlib.sha1(fh.read()).hexdigest()] = os.path.join(cls, name)
    return out


def shard_epochs(monkeypatch, folder, shard_id, num_shards, epochs):
    """The images (sha1 of the file bytes) that create_dataset's training pipeline reads for
    ``shard_id``, per epoch, as train.py builds it; seen at its first map operation."""
    seen = []

    def record(raw):
        seen.append(hashlib.sha1(raw.tobytes()).hexdigest())
        return raw

    monkeypatch.setattr(dataset_module, "check_complete_image", record)
    data = dataset_module.create_dataset(folder, do_train=True, batch_size=BATCH, image_size=32,
                                         num_parallel_workers=1, num_shards=num_shards, shard_id=shard_id, seed=1)
    iterator = data.create_tuple_iterator(num_epochs=epochs)
    for _ in range(epochs):
        for _ in iterator:
            pass
    per_epoch = len(seen) // epochs
    assert len(seen) == per_epoch * epochs
    return [seen[e * per_epoch:(e + 1) * per_epoch] for e in range(epochs)]


# ---- sharding (in process, no network) ----

def test_shards_are_disjoint_and_cover_the_data_every_epoch(data, monkeypatch):
    images = set(file_hashes(data[0]))
    assert len(images) == IMAGES
    shards = [shard_epochs(monkeypatch, data[0], k, RANKS, EPOCHS) for k in range(RANKS)]
    for epoch in range(EPOCHS):
        first, second = shards[0][epoch], shards[1][epoch]
        assert len(first) == len(set(first)) == IMAGES // RANKS
        assert not set(first) & set(second)
        assert set(first) | set(second) == images
    assert shards[0][0] != shards[0][1]  # reshuffled every epoch


def test_an_uneven_count_pads_the_shards_by_repeating_images(data, monkeypatch, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(data[0], folder)
    cls = sorted(os.listdir(folder))[0]
    shutil.copy(os.path.join(data[1], cls, sorted(os.listdir(os.path.join(data[1], cls)))[0]),
                folder / cls / "extra.jpg")  # a validation image: not yet in the training folder
    images = set(file_hashes(str(folder)))
    assert len(images) == IMAGES + 1
    first, second = (shard_epochs(monkeypatch, str(folder), k, RANKS, 1)[0] for k in range(RANKS))
    # 33 images over 2 ranks: 17 each, every image read, one of them by both ranks
    assert len(first) == len(second) == (IMAGES + 2) // RANKS
    assert set(first) | set(second) == images
    assert len(set(first) & set(second)) == 1


# ---- a real 2-rank run on CPU (msrun) ----

def bash(script, args, cwd, env=None, timeout=300):
    return subprocess.run(["bash", os.path.join(SCRIPTS, script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def same_graphs(name):
    """Environment that lets runs of one network and settings share MindSpore's compiled graphs
    (its compile cache; each rank keeps its own), see helpers.run_entry."""
    return {"MS_COMPILER_CACHE_ENABLE": "1",
            "MS_COMPILER_CACHE_PATH": os.path.join(os.environ["SHUFFLENET_TEST_COMPILE_CACHE"], f"dist-{name}")}


def processes_mentioning(text):
    """Live processes whose command line contains ``text`` (read from /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(pid), cmdline))
    return found


def listening(port):
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(name):
            with open(name, encoding="ascii") as fh:
                for line in fh.readlines()[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        return True
    return False


def params(path, trainable=True):
    """Weights (and momenta) or BN moving statistics of a checkpoint, by name."""
    out = {}
    for name, value in ms.load_checkpoint(path).items():
        if not hasattr(value, "asnumpy") or name in ("epoch_num", "step_num", "global_step", "steps_per_epoch",
                                                     "global_step_num", "learning_rate", "momentum", "group",
                                                     "num_classes", "image_size"):
            continue
        if name.endswith(("moving_mean", "moving_variance")) != trainable:
            out[name] = value.asnumpy()
    return out


@pytest.fixture(scope="module")
def dp_run(data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("dp")
    proc = bash("run_distribute_train_cpu.sh", [str(RANKS), data[0], *TRAIN, *LOGGED, "--eval_interval", "1",
                                                "--eval_dataset_path", data[1]], cwd, env=same_graphs("logged"))
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return cwd, proc


@pytest.mark.slow
def test_each_rank_trains_its_shard_of_every_epoch(dp_run):
    cwd, _ = dp_run
    for rank in range(RANKS):
        with open(cwd / "msrun_log" / f"worker_{rank}.log", encoding="utf-8", errors="replace") as fh:
            log = fh.read()
        assert f"{STEPS} steps of {BATCH} images per epoch x {RANKS} device(s)" in log
        assert f"[rank {rank}] epoch {EPOCHS}/{EPOCHS}: loss" in log
        assert f"training done. checkpoints: {cwd / 'out' / f'rank_{rank}'}" in log
        assert (f"epoch {EPOCHS}: val Top_1_Acc" in log) == (rank == 0)  # validation on rank 0 only
        with open(cwd / "out" / f"rank_{rank}" / "train_log.jsonl", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        assert [r["optimizer_step"] for r in records] == [STEPS * e for e in range(1, EPOCHS + 1)]
    assert STEPS * BATCH * RANKS == IMAGES  # together the ranks cover the data set every epoch


@pytest.mark.slow
def test_gradients_are_averaged_weights_identical_on_every_rank(dp_run):
    cwd, _ = dp_run
    ranks = [cwd / "out" / f"rank_{rank}" / FINAL for rank in range(RANKS)]
    weights = [params(str(path)) for path in ranks]
    recorded = [ms.load_checkpoint(str(path)) for path in ranks]
    assert float(recorded[0]["best_val_top1"]) >= 0  # rank 0 validates and records its best
    assert "best_val_top1" not in recorded[1]
    assert len(weights[0]) > 100 and weights[0].keys() == weights[1].keys()
    assert any(name.startswith("moments.") for name in weights[0])
    for name, value in weights[0].items():
        np.testing.assert_array_equal(value, weights[1][name], err_msg=name)
    # ...while each rank normalised its own images: the BN running statistics are per rank, so the
    # ranks did see different data, and identical weights mean the gradients were shared.
    stats = [params(str(path), trainable=False) for path in ranks]
    differing = [n for n, v in stats[0].items() if not np.array_equal(v, stats[1][n])]
    assert len(differing) == len(stats[0]) > 0


@pytest.mark.slow
def test_checkpoints_per_rank_no_shared_files_and_a_clean_end(dp_run):
    cwd, proc = dp_run
    assert sorted(os.listdir(cwd)) == ["msrun_log", "out"]  # nothing else written to the working folder
    assert sorted(os.listdir(cwd / "out")) == ["rank_0", "rank_1"]
    # the recovery point of step 6 (epoch 2, step 2) is among the two newest checkpoints: kept
    expected = sorted(["config.yaml", "curves.png", "train_log.jsonl", "train_steps.jsonl",
                       f"shufflenetv1-{EPOCHS - 1}_{STEPS}.ckpt", "shufflenetv1-2_2.ckpt", FINAL])
    for rank in range(RANKS):
        best = ["shufflenetv1_best.ckpt"] if rank == 0 else []  # validation runs on rank 0 only
        assert sorted(os.listdir(cwd / "out" / f"rank_{rank}")) == sorted(expected + best)
    assert {"worker_0.log", "worker_1.log", "scheduler.log"} <= set(os.listdir(cwd / "msrun_log"))
    port = int(proc.stdout.split("master port ", 1)[1].split(",", 1)[0])
    assert not processes_mentioning(str(cwd)), "processes of the run are still alive"
    assert not listening(port), f"the scheduler's port {port} is still open"


@pytest.mark.slow
def test_all_ranks_killed_at_a_random_step_resume_from_one_step_and_end_as_if_never_stopped(dp_run, data,
                                                                                             tmp_path):
    """Both ranks SIGKILLed (the launcher's whole process group) after a recovery checkpoint, at a step
    that may leave them one checkpoint apart; --resume auto continues every rank from the newest step they
    all have, and each ends bit for bit where the uninterrupted run's rank did."""
    cwd, _ = dp_run
    command = ["bash", os.path.join(SCRIPTS, "run_distribute_train_cpu.sh"), str(RANKS), data[0], *TRAIN, *LOGGED,
               "--eval_interval", "1", "--eval_dataset_path", data[1], "--resume", "auto"]
    env = {**os.environ, "PYTHON": sys.executable, **same_graphs("logged")}  # dp_run's network and settings
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    kill_after = random.Random().randint(EVERY + 1, EPOCHS * STEPS - 1)
    deadline = time.time() + 300
    while min(max(steps_of(tmp_path / "out" / f"rank_{r}"), default=0) for r in range(RANKS)) < kill_after:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "training too slow"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while processes_mentioning(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(str(tmp_path)), "a rank outlived the kill"
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
    starts = []
    for rank in range(RANKS):
        folder = tmp_path / "out" / f"rank_{rank}"
        reference = cwd / "out" / f"rank_{rank}"
        resumed = [line for line in _worker_logs(tmp_path, rank) if line.startswith("resume auto: continuing from")]
        assert resumed, f"rank {rank} did not resume"
        starts.append(resumed[-1].split("(")[1])
        ref_steps, got_steps = steps_of(reference), steps_of(folder)
        assert sorted(got_steps) == sorted(ref_steps) == list(range(1, EPOCHS * STEPS + 1))
        assert got_steps == ref_steps, f"rank {rank}: per-step losses differ from the uninterrupted run"
        expected, got = params(str(reference / FINAL)), params(str(folder / FINAL))
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=f"rank {rank}: {name}")
    assert starts[0] == starts[1], f"the ranks resumed from different steps: {starts}"


def steps_of(folder):
    """global step -> loss of a rank's train_steps.jsonl (the last record of a step counts)."""
    path = os.path.join(folder, "train_steps.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return {r["global_step"]: r["loss"] for r in (json.loads(line) for line in fh if line.strip().endswith("}"))}


def _worker_logs(cwd, rank):
    """The lines of every msrun log of ``rank`` under ``cwd`` (a rerun writes a new log folder)."""
    lines = []
    for folder in sorted(p for p in os.listdir(cwd) if p.startswith("msrun_log")):
        path = os.path.join(cwd, folder, f"worker_{rank}.log")
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines += fh.read().splitlines()
    return lines


@pytest.mark.slow
def test_a_failing_rank_fails_the_launcher_and_leaves_no_process(data, tmp_path):
    proc = bash("run_distribute_train_cpu.sh", [str(RANKS), data[0], "--batch_sise", "4"], tmp_path)
    assert proc.returncode != 0
    assert f"error: distributed training failed (exit code {proc.returncode}); see {tmp_path}/msrun_log" in proc.stderr
    for rank in range(RANKS):
        log = (tmp_path / "msrun_log" / f"worker_{rank}.log").read_text(errors="replace")
        assert "error: unknown key 'batch_sise' in the command line; did you mean 'batch_size'?" in log
    assert not processes_mentioning("--batch_sise")


@pytest.mark.slow
def test_one_rank_alone_on_its_shard_ends_elsewhere(dp_run, data, monkeypatch, tmp_path):
    """A single-device run on rank 0's images (same settings): the distributed weights are not it."""
    cwd, _ = dp_run
    names = file_hashes(data[0])
    shard = tmp_path / "shard0"
    for digest in shard_epochs(monkeypatch, data[0], 0, RANKS, 1)[0]:
        os.makedirs(shard / os.path.dirname(names[digest]), exist_ok=True)
        shutil.copy(os.path.join(data[0], names[digest]), shard / names[digest])
    (tmp_path / "train.log").write_text("the log of an earlier run\n")
    one_epoch = [*TRAIN, "--epoch_size", "1"]  # compared with the distributed run's first epoch
    proc = bash("run_standalone_train.sh", [str(shard), "", "0", "--device_target", "CPU", "--num_parallel_workers",
                                            "1", *one_epoch], tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert f"{STEPS} steps of {BATCH} images per epoch x 1 device(s)" in proc.stdout
    # the banner names the device used (not the script's Ascend), and the earlier log is kept
    banner = proc.stdout.splitlines()[0]
    assert banner.startswith("training on CPU device 0 with ") and "log: " in banner
    assert (tmp_path / "train.log").read_text() == "the log of an earlier run\n"
    new_log = banner.split("log: ")[1]
    assert new_log != str(tmp_path / "train.log") and os.path.isfile(new_log)
    alone = params(str(tmp_path / "out" / f"shufflenetv1-1_{STEPS}.ckpt"))
    together = params(str(cwd / "out" / "rank_0" / f"shufflenetv1-1_{STEPS}.ckpt"))
    gap = max(float(np.abs(alone[n] - together[n]).max()) for n in alone if not n.startswith("moments."))
    assert gap > 1e-3, gap


@pytest.mark.slow
def test_with_identical_shards_every_rank_ends_exactly_where_one_device_alone_does(data, tmp_path):
    """Every image the same file: each rank's gradient equals a lone device's, so their mean does
    too (a sum would double it), and both ranks must end bit for bit where one device does."""
    image = os.path.join(data[0], sorted(os.listdir(data[0]))[0])
    image = os.path.join(image, sorted(os.listdir(image))[0])
    for name, count in (("two_ranks", IMAGES), ("one_device", IMAGES // RANKS)):
        os.makedirs(tmp_path / name / "a")
        for i in range(count):
            shutil.copy(image, tmp_path / name / "a" / f"{i:03d}.jpg")
    one_epoch = [*TRAIN, "--epoch_size", "1"]  # (one epoch shows it: a sum would double every step)
    dist = bash("run_distribute_train_cpu.sh", [str(RANKS), "two_ranks", *one_epoch], tmp_path,
                env={"LOG_DIR": str(tmp_path / "logs")})
    assert dist.returncode == 0, f"{dist.stdout[-3000:]}\n{dist.stderr[-3000:]}"
    alone = bash("run_standalone_train.sh", ["one_device", "", "0", "--device_target", "CPU",
                                             "--num_parallel_workers", "1", *one_epoch, "--save_ckpt_path", "single"],
                 tmp_path)
    assert alone.returncode == 0, f"{alone.stdout[-3000:]}\n{alone.stderr[-3000:]}"
    first = f"shufflenetv1-1_{STEPS}.ckpt"
    single = {**params(str(tmp_path / "single" / first)), **params(str(tmp_path / "single" / first), False)}
    for rank in range(RANKS):
        path = str(tmp_path / "out" / f"rank_{rank}" / first)
        ranked = {**params(path), **params(path, False)}
        assert ranked.keys() == single.keys()
        for name, value in single.items():
            np.testing.assert_array_equal(ranked[name], value, err_msg=f"rank {rank}: {name}")


@pytest.mark.slow
def test_run_eval_sh_scores_a_rank_checkpoint(dp_run, data, tmp_path):
    cwd, _ = dp_run
    ckpt = tmp_path / FINAL  # a copy: eval_log.txt goes next to it, not into the run's rank_0/
    shutil.copy(cwd / "out" / "rank_0" / FINAL, ckpt)
    proc = bash("run_eval.sh", [data[1], str(ckpt), "--device_target", "CPU", "--batch_size", "4",
                                "--num_parallel_workers", "1", *NET], tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Top_1_Acc" in proc.stdout and f"ckpt:'{ckpt}'" in proc.stdout
    assert (tmp_path / "eval.log").is_file() and (ckpt.parent / "eval_log.txt").is_file()


# ---- argument handling of every launch script ----

USAGES = {
    "run_distribute_train.sh": "RANK_TABLE_FILE DATA_DIR [CONFIG]",
    "run_distribute_train_gpu.sh": "RANK_SIZE DATA_DIR [CONFIG]",
    "run_distribute_train_cpu.sh": "WORKERS DATA_DIR [CONFIG]",
    "run_standalone_train.sh": "DATA_DIR [CONFIG] [DEVICE_ID]",
    "run_standalone_train_gpu.sh": "DATA_DIR [CONFIG] [DEVICE_ID]",
    "run_eval.sh": "DATA_DIR CKPT [CONFIG]",
    "run_eval_gpu.sh": "DATA_DIR CKPT [CONFIG]",
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(USAGES))
def test_usage_line_for_missing_arguments(script, tmp_path):
    for args in ([], ["--batch_size", "4"]):
        proc = bash(script, args, tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"Usage: bash scripts/{script} {USAGES[script]}"), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("run_distribute_train.sh", ["table.json", "nope"]),
    ("run_distribute_train_gpu.sh", ["8", "nope"]),
    ("run_distribute_train_cpu.sh", ["2", "nope"]),
    ("run_standalone_train.sh", ["nope"]),
    ("run_standalone_train_gpu.sh", ["nope"]),
    ("run_eval.sh", ["nope", "x.ckpt"]),
    ("run_eval_gpu.sh", ["nope", "x.ckpt"]),
])
def test_a_missing_data_dir_is_named_as_an_absolute_path(script, args, tmp_path):
    (tmp_path / "table.json").write_text("{}")
    (tmp_path / "x.ckpt").write_text("")
    proc = bash(script, args, tmp_path)
    assert proc.returncode == 2
    assert f"error: DATA_DIR={tmp_path}/nope is not a directory" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script,args,message,code", [
    ("run_distribute_train.sh", ["missing.json", "data"], "error: RANK_TABLE_FILE={t}/missing.json is not a file", 2),
    ("run_distribute_train.sh", ["data/a/0.jpg", "data"], "error: RANK_TABLE_FILE={t}/data/a/0.jpg is not a "
                                                          "readable JSON rank table", 2),
    ("run_distribute_train.sh", ["table.json", "data", "no.yaml"], "error: CONFIG={t}/no.yaml is not a file", 2),
    ("run_distribute_train_gpu.sh", ["eight", "data"], "error: RANK_SIZE=eight must be an integer >= 1", 2),
    ("run_distribute_train_gpu.sh", ["2", "data", "no.yaml"], "error: CONFIG={t}/no.yaml is not a file", 2),
    ("run_distribute_train_cpu.sh", ["0", "data"], "error: WORKERS=0 must be an integer >= 1", 2),
    ("run_distribute_train_cpu.sh", ["2", "data", "no.yaml"], "error: CONFIG={t}/no.yaml is not a file", 2),
    ("run_standalone_train.sh", ["data", "no.yaml"], "error: CONFIG={t}/no.yaml is not a file", 2),
    ("run_standalone_train.sh", ["data", "", "first"], "error: DEVICE_ID=first must be an integer >= 0", 2),
    ("run_standalone_train_gpu.sh", ["data", "", "-1"], "error: DEVICE_ID=-1 must be an integer >= 0", 2),
    ("run_eval.sh", ["data", "no.ckpt"], "error: CKPT={t}/no.ckpt is not a file", 2),
    ("run_eval_gpu.sh", ["data", "x.ckpt", "no.yaml"], "error: CONFIG={t}/no.yaml is not a file", 2),
])
def test_bad_arguments_are_named(script, args, message, code, tmp_path):
    os.makedirs(tmp_path / "data" / "a")
    (tmp_path / "data" / "a" / "0.jpg").write_bytes(b"\xff\xd8 not a table")
    (tmp_path / "table.json").write_text(json.dumps(rank_table([[0, 1]])))
    (tmp_path / "x.ckpt").write_text("")
    proc = bash(script, args, tmp_path, env={"MPIRUN": "true"})
    assert proc.returncode == code, proc.stderr
    assert message.format(t=tmp_path) in proc.stderr, proc.stderr


def rank_table(servers):
    """A rank table in the format hccl_tools.py writes (addresses are placeholders)."""
    rank = iter(range(100))
    return {"version": "1.0", "server_count": str(len(servers)), "status": "completed",
            "server_list": [{"server_id": f"10.0.0.{s + 1}", "host_nic_ip": "reserve",
                             "device": [{"device_id": str(d), "device_ip": f"192.168.{d}.{s + 1}",
                                         "rank_id": str(next(rank))} for d in devices]}
                            for s, devices in enumerate(servers)]}


RECORDER = '''#!{python}
"""Stands in for python when the launcher starts train.py: writes what it was given to
launched.json in its working folder (there is no Ascend here); anything else runs in Python."""
import json, os, sys
if len(sys.argv) > 1 and sys.argv[1].endswith("train.py"):
    keys = ("RANK_ID", "DEVICE_ID", "RANK_SIZE", "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH")
    with open("launched.tmp", "w") as fh:
        json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}}}}, fh)
    os.replace("launched.tmp", "launched.json")
else:
    os.execv({python!r}, [{python!r}] + sys.argv[1:])
'''


def wait_for(paths, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline and not all(os.path.exists(p) for p in paths):
        time.sleep(0.2)
    assert all(os.path.exists(p) for p in paths), [p for p in paths if not os.path.exists(p)]


@pytest.mark.slow
def test_ascend_launcher_starts_one_process_per_device_of_the_table(data, tmp_path):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    table = tmp_path / "rank_table_2p.json"
    table.write_text(json.dumps(rank_table([[4, 5]])))  # devices 4 and 5 are ranks 0 and 1
    proc = bash("run_distribute_train.sh", [table.name, data[0], "--batch_size", "4"], tmp_path,
                env={"PYTHON": str(recorder)})
    assert proc.returncode == 0, proc.stderr
    assert "launching 2 of 2 ranks" in proc.stdout
    launched = [tmp_path / f"train_parallel{rank}" / "launched.json" for rank in range(2)]
    wait_for(launched)
    for rank, path in enumerate(launched):
        assert f"rank {rank} on device {rank + 4}: pid" in proc.stdout
        assert f"log {tmp_path}/train_parallel{rank}/train.log" in proc.stdout
        with open(path, encoding="utf-8") as fh:
            got = json.load(fh)
        assert got["env"] == {"RANK_ID": str(rank), "DEVICE_ID": str(rank + 4), "RANK_SIZE": "2",
                              "RANK_TABLE_FILE": str(table), "MINDSPORE_HCCL_CONFIG_PATH": str(table)}
        assert got["argv"] == [os.path.join(ROOT, "train.py"), "--config_path",
                               os.path.join(ROOT, "default_config.yaml"), "--device_target", "Ascend",
                               "--is_distributed", "True", "--train_dataset_path", data[0], "--batch_size", "4"]


@pytest.mark.slow
def test_ascend_launcher_reads_the_older_group_list_format(data, tmp_path):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    instances = [{"devices": [{"device_id": str(device), "device_ip": "192.0.2.1"}], "rank_id": str(rank),
                  "server_id": "10.0.0.1"} for rank, device in enumerate((2, 3))]
    table = {"version": "0.1", "group_count": "1",
             "group_list": [{"group_name": "hccl_world_group", "instance_count": "2", "instance_list": instances}]}
    (tmp_path / "old_table.json").write_text(json.dumps(table))
    proc = bash("run_distribute_train.sh", ["old_table.json", data[0]], tmp_path, env={"PYTHON": str(recorder)})
    assert proc.returncode == 0, proc.stderr
    assert "launching 2 of 2 ranks" in proc.stdout
    launched = [tmp_path / f"train_parallel{rank}" / "launched.json" for rank in range(2)]
    wait_for(launched)
    for rank, path in enumerate(launched):
        with open(path, encoding="utf-8") as fh:
            env = json.load(fh)["env"]
        assert (env["RANK_ID"], env["DEVICE_ID"], env["RANK_SIZE"]) == (str(rank), str(rank + 2), "2")


@pytest.mark.slow
@pytest.mark.parametrize("table", [{}, {"version": "1.0", "server_list": []}, {"version": "0.1", "group_list": []}])
def test_ascend_launcher_refuses_a_table_without_devices(data, tmp_path, table):
    (tmp_path / "table.json").write_text(json.dumps(table))
    proc = bash("run_distribute_train.sh", ["table.json", data[0]], tmp_path)
    assert proc.returncode == 2
    assert f"error: RANK_TABLE_FILE={tmp_path}/table.json lists no devices" in proc.stderr
    assert "hccl_tools.py" in proc.stderr
    assert not list(tmp_path.glob("train_parallel*"))


@pytest.mark.slow
def test_ascend_launcher_needs_server_id_for_a_table_of_several_servers(data, tmp_path):
    table = tmp_path / "rank_table_16p.json"
    table.write_text(json.dumps(rank_table([range(8), range(8)])))
    proc = bash("run_distribute_train.sh", [str(table), data[0]], tmp_path)
    assert proc.returncode == 2
    assert "lists 2 servers (10.0.0.1, 10.0.0.2); run this script on each of them with SERVER_ID=" in proc.stderr
    assert not list(tmp_path.glob("train_parallel*"))


@pytest.mark.slow
def test_gpu_launcher_runs_mpirun_with_one_rank_per_gpu(data, tmp_path):
    missing = bash("run_distribute_train_gpu.sh", ["2", data[0]], tmp_path, env={"MPIRUN": "no-such-mpirun"})
    assert missing.returncode == 1
    assert "error: MPIRUN=no-such-mpirun is not an executable on PATH; install OpenMPI" in missing.stderr
    # the command mpirun gets (recorded, no GPU here)
    mpirun = tmp_path / "mpirun"
    mpirun.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > mpirun_args.tmp && mv mpirun_args.tmp mpirun_args.txt\n')
    mpirun.chmod(0o755)
    proc = bash("run_distribute_train_gpu.sh", ["2", data[0]], tmp_path, env={"MPIRUN": str(mpirun)})
    assert proc.returncode == 0, proc.stderr
    args_file = tmp_path / "train_parallel_gpu" / "mpirun_args.txt"
    wait_for([args_file])
    args = args_file.read_text().splitlines()
    root = ["--allow-run-as-root"] if os.getuid() == 0 else []
    assert args == ["-n", "2", *root, "--output-filename", "mpi_logs", "--merge-stderr-to-stdout", sys.executable,
                    os.path.join(ROOT, "train.py"), "--config_path", os.path.join(ROOT, "gpu_default_config.yaml"),
                    "--device_target", "GPU", "--is_distributed", "True", "--train_dataset_path", data[0]]


@pytest.mark.slow
def test_train_py_distributed_without_a_launcher_says_which_to_use(data, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MS_ROLE", "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH", "OMPI_COMM_WORLD_RANK")}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--device_target", "CPU",
                           "--is_distributed", "True", "--train_dataset_path", data[0]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "error: is_distributed=True needs a launcher" in proc.stderr
    assert "scripts/run_distribute_train_cpu.sh (CPU)" in proc.stderr
