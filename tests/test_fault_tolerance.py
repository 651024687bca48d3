"""Kill training at any moment, resume, lose nothing (real subprocesses on tiny data)."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

from src.callbacks import list_checkpoints, remove_unfinished_writes, save_checkpoint_atomic, verify_checkpoint
from src.lr_generator import get_lr
from src.synthetic import make_shapes_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, STEPS, LR = 8, 6, 0.0003

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=24, val_per_class=4, image_size=40)[0]


def command(data, out):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--device_target", "CPU", "--amp_level", "O0",
            "--model_size", "0.5x", "--num_classes", "3", "--image_size", "32", "--batch_size", "12",
            "--epoch_size", str(EPOCHS), "--lr_max", str(LR), "--warmup_epochs", "1", "--num_parallel_workers", "1",
            "--keep_checkpoint_max", "3", "--train_dataset_path", data, "--save_ckpt_path", str(out),
            "--resume", "auto"]


def records(out):
    path = os.path.join(out, "train_log.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip().endswith("}")]


def start(data, out, cwd):
    return subprocess.Popen(command(data, out), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(proc, out, count, timeout=300):
    deadline = time.time() + timeout
    while len(records(out)) < count:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("training too slow")
        time.sleep(0.05)


def finish(data, out, cwd):
    proc = subprocess.run(command(data, out), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def check_schedule(out, epochs):
    lr = get_lr(0.0, 0.0, LR, 1, EPOCHS, STEPS, "cosine")
    by_epoch = {r["epoch"]: r for r in records(out)}
    assert sorted(by_epoch) == list(range(1, epochs + 1))
    for epoch, r in by_epoch.items():
        assert r["optimizer_step"] == epoch * STEPS
        assert r["lr_first"] == pytest.approx(float(lr[(epoch - 1) * STEPS]))
        assert r["lr_last"] == pytest.approx(float(lr[epoch * STEPS - 1]))


def test_sigkill_mid_epoch_then_resume(data, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    wait_for_epochs(proc, out, 2)
    time.sleep(random.uniform(0.0, 0.4))  # somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {path: os.path.getsize(path) for _, _, path in list_checkpoints(out)}
    newest_epoch = list_checkpoints(out)[-1][0]
    logged_before = records(out)
    (out / "eval_log.txt").write_text("result:{'Top_1_Acc': 0.5}, ckpt:'x', time: 1 ms\n")
    config_before = (out / "config.yaml").read_text()
    # what a kill inside save_checkpoint leaves behind (MindSpore's temporary file of our temporary)
    unfinished = out / f"shufflenetv1-{newest_epoch + 1}_{STEPS}.ckpt.tmp-{proc.pid}.tmp"
    unfinished.write_bytes(b"half a checkpoint")

    stdout = finish(data, out, tmp_path)
    assert f"removed {unfinished}: an unfinished checkpoint write of a killed run" in stdout
    assert f"continuing from {out / f'shufflenetv1-{newest_epoch}_{STEPS}.ckpt'}" in stdout
    # at most the steps since the last checkpoint were lost: training went on right after it
    assert f"epochs {newest_epoch + 1}-{EPOCHS}" in stdout
    check_schedule(out, EPOCHS)
    assert [r["epoch"] for r in records(out)[:len(logged_before)]] == [r["epoch"] for r in logged_before]
    assert (out / "eval_log.txt").read_text().startswith("result:{'Top_1_Acc': 0.5}")
    assert (out / "config.yaml").read_text() == config_before
    assert (out / "curves.png").stat().st_size > 0
    names = [os.path.basename(p) for _, _, p in list_checkpoints(out)]
    assert names == [f"shufflenetv1-{e}_{STEPS}.ckpt" for e in range(EPOCHS - 2, EPOCHS + 1)]
    assert not [n for n in os.listdir(out) if ".tmp" in n]
    for path, size in before.items():  # anything still kept was not rewritten
        if os.path.exists(path):
            assert os.path.getsize(path) == size


def test_damaged_newest_checkpoint_is_skipped(data, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    wait_for_epochs(proc, out, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = list_checkpoints(out)
    newest, previous = found[-1][2], found[-2]
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 2)
    assert verify_checkpoint(newest)
    stdout = finish(data, out, tmp_path)
    assert f"warning: skipping damaged checkpoint {newest}" in stdout
    assert f"continuing from {previous[2]} (epoch {previous[0]}" in stdout
    check_schedule(out, EPOCHS)


def test_sigterm_saves_the_current_state_and_says_how_to_resume(data, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    wait_for_epochs(proc, out, 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopped by SIGTERM: saved " in stderr and "--resume auto" in stderr
    saved = stderr.split("saved ")[1].split(". To continue")[0]
    assert os.path.isfile(saved) and verify_checkpoint(saved) is None
    epoch, step, _ = next(item for item in list_checkpoints(out) if item[2] == saved)
    stdout = finish(data, out, tmp_path)
    if step < STEPS:
        assert f"saved at step {step}/{STEPS} of epoch {epoch}" in stdout
    check_schedule(out, EPOCHS)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    import mindspore as ms
    from src.shufflenetv1 import ShuffleNetV1
    net = ShuffleNetV1("0.5x", 3, 3)
    path = str(tmp_path / "shufflenetv1-1_6.ckpt")
    save_checkpoint_atomic(net, path, append_dict={"epoch_num": 1})
    assert os.listdir(tmp_path) == ["shufflenetv1-1_6.ckpt"]
    assert verify_checkpoint(path) is None
    assert int(ms.load_checkpoint(path)["epoch_num"].asnumpy()) == 1
    # a failing save leaves neither the file nor its temporary
    with pytest.raises(Exception):
        save_checkpoint_atomic(net, str(tmp_path / "missing_dir" / "x.ckpt"))
    assert os.listdir(tmp_path) == ["shufflenetv1-1_6.ckpt"]


def test_disk_full_is_refused_before_training(tmp_path, monkeypatch):
    import shutil
    import train
    from src.shufflenetv1 import ShuffleNetV1
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=5 << 20))
    with pytest.raises(train.SetupError, match=r"not enough disk space in .*: 5 MiB free, the run needs about"):
        train.check_free_space(str(tmp_path), ShuffleNetV1("0.5x", 3, 3), keep_max=5)


_VAL_LINE = re.compile(r"^epoch (\d+): val Top_1_Acc ([0-9.]+), best ([0-9.]+)( \(saved .*\))?$", re.MULTILINE)


def test_resumed_run_keeps_a_better_best_checkpoint(tmp_path):
    train_dir, val_dir = make_shapes_dataset(str(tmp_path / "data"), num_classes=3, train_per_class=8,
                                             val_per_class=4, image_size=40)
    out = tmp_path / "run"

    def run(epochs):
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--device_target", "CPU", "--amp_level", "O0",
               "--model_size", "0.5x", "--num_classes", "3", "--image_size", "32", "--batch_size", "8",
               "--epoch_size", str(epochs), "--lr_max", "0.02", "--warmup_epochs", "0", "--num_parallel_workers",
               "1", "--train_dataset_path", train_dir, "--eval_dataset_path", val_dir, "--eval_interval", "1",
               "--save_ckpt_path", str(out), "--resume", "auto"]
        proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [(int(e), float(top1), float(best), bool(saved)) for e, top1, best, saved in
                _VAL_LINE.findall(proc.stdout)]

    lines = run(2) + run(4)
    assert [e for e, *_ in lines] == [1, 2, 3, 4]
    top1s = [t for _, t, _, _ in lines]
    # the best so far carries over the resume: a worse epoch 3 or 4 does not replace the best checkpoint
    assert [b for *_, b, _ in lines] == pytest.approx(list(np.maximum.accumulate(top1s)), abs=1e-4)
    best_epoch = 1 + top1s.index(max(top1s))
    assert max(e for e, *_, saved in lines if saved) == best_epoch
    best = ms.load_checkpoint(str(out / "shufflenetv1_best.ckpt"))
    assert int(best["epoch_num"].asnumpy()) == best_epoch
    assert float(best["val_top1"].asnumpy()) == pytest.approx(max(top1s), abs=1e-4)  # printed to 4 places
    last = ms.load_checkpoint(str(out / "shufflenetv1-4_3.ckpt"))
    assert float(last["best_val_top1"].asnumpy()) == pytest.approx(max(top1s), abs=1e-4)


def test_unfinished_writes_of_a_killed_run_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now: a writer that no longer runs
    stale = [tmp_path / f"shufflenetv1-2_6.ckpt.tmp-{dead.pid}.tmp",  # MindSpore's own temporary file
             tmp_path / f"shufflenetv1_best.ckpt.tmp-{dead.pid}.ckpt"]  # ours
    live = tmp_path / f"shufflenetv1-3_6.ckpt.tmp-{os.getpid()}.ckpt"  # a write in progress
    kept = [tmp_path / "shufflenetv1-1_6.ckpt", tmp_path / "notes.tmp-1.txt", live]
    for path in stale + kept:
        path.write_bytes(b"x")
    stale[0].chmod(0o400)
    assert remove_unfinished_writes(str(tmp_path)) == sorted(str(p) for p in stale)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in kept)
    assert remove_unfinished_writes(str(tmp_path / "missing")) == []
