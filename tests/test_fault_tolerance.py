"""Kill training at any step, resume, lose nothing, end where an uninterrupted run ends (real
subprocesses on tiny data, GRAPH mode as a user runs it).

The proof of exact resume: an uninterrupted run of EPOCHS epochs, and runs stopped at a random
step (SIGKILL after a step checkpoint, SIGTERM anywhere) and continued with --resume auto: their
per-step losses after the resume point, their epoch records and their final weights, optimizer
state and best checkpoint are equal to the bit (MindSpore on CPU is deterministic for a fixed
seed, the data pipeline replays to the resume step).
"""
import os
import random
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest

from helpers import ROOT, read_jsonl, run_entry
from src.checkpoint_utils import (list_checkpoints, remove_unfinished_writes, save_checkpoint_atomic,
                                  verify_checkpoint)
from src.synthetic import make_shapes_dataset

EPOCHS, STEPS, EVERY = 3, 6, 4  # 72 images / batch 12; a recovery checkpoint every 4 steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=24, val_per_class=4, image_size=40)


def args(data, out):
    return ["--device_target", "CPU", "--model_size", "0.5x", "--num_classes", "3", "--image_size", "32",
            "--batch_size", "12", "--epoch_size", str(EPOCHS), "--lr_max", "0.01", "--warmup_epochs", "1",
            "--num_parallel_workers", "2", "--keep_checkpoint_max", "2", "--log_interval", "1", "--exact_data_resume",
            "True",
            "--save_checkpoint_steps", str(EVERY), "--eval_interval", "1", "--eval_dataset_path", data[1],
            "--train_dataset_path", data[0], "--save_ckpt_path", str(out), "--resume", "auto"]


def run(data, out, cwd, check=True):
    return run_entry("train.py", args(data, out), cwd, check=check, compile_cache="fault_tolerance")


def start(data, out, cwd):
    env = {**os.environ, "MS_COMPILER_CACHE_ENABLE": "1",
           "MS_COMPILER_CACHE_PATH": os.path.join(os.environ["SHUFFLENET_TEST_COMPILE_CACHE"],
                                                  "train.py-fault_tolerance")}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args(data, out)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_logged(out):
    """The loss of each global step (the last record of a step counts: a killed run logs some twice)."""
    return {r["global_step"]: r["loss"] for r in read_jsonl(os.path.join(out, "train_steps.jsonl"))}


def wait_until(proc, done, timeout=300):
    deadline = time.time() + timeout
    while not done():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("training too slow")
        time.sleep(0.02)


def state(path):
    """Every array of a checkpoint (weights, BN statistics, momenta, LR step) by name."""
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def assert_same_run(out, reference, resumed_after):
    """``out`` (resumed after global step ``resumed_after``) ended exactly where ``reference`` did."""
    ref_steps, got_steps = steps_logged(reference), steps_logged(out)
    assert sorted(got_steps) == sorted(ref_steps) == list(range(1, EPOCHS * STEPS + 1))
    after = [s for s in ref_steps if s > resumed_after]
    assert after, "the stop came after the last step"
    assert [got_steps[s] for s in after] == [ref_steps[s] for s in after]  # to the bit
    ref_epochs = {r["epoch"]: r for r in read_jsonl(os.path.join(reference, "train_log.jsonl"))}
    got_epochs = {r["epoch"]: r for r in read_jsonl(os.path.join(out, "train_log.jsonl"))}
    assert sorted(got_epochs) == list(range(1, EPOCHS + 1))
    for epoch, record in got_epochs.items():
        for key in ("loss", "val_top1", "best_val_top1", "optimizer_step", "lr_first", "lr_last"):
            assert record[key] == ref_epochs[epoch][key], (epoch, key)
    final = f"shufflenetv1-{EPOCHS}_{STEPS}.ckpt"
    for name in (final, "shufflenetv1_best.ckpt"):
        expected, got = state(os.path.join(reference, name)), state(os.path.join(out, name))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key}")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run."""
    work = tmp_path_factory.mktemp("reference")
    run(data, work / "run", work)
    return work / "run"


def test_sigkill_at_a_random_step_then_resume_ends_where_the_uninterrupted_run_ends(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    # killed at a random step after the first recovery checkpoint (step 4 or 8 or ... within an epoch)
    kill_after = random.Random().randint(EVERY + 1, EPOCHS * STEPS - 2)
    wait_until(proc, lambda: max(steps_logged(out), default=0) >= kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch, step, newest = list_checkpoints(str(out))[-1]
    resumed_after = (epoch - 1) * STEPS + step
    (out / "eval_log.txt").write_text("result:{'Top_1_Acc': 0.5}, ckpt:'x', time: 1 ms\n")
    config_before = (out / "config.yaml").read_text()
    sizes = {path: os.path.getsize(path) for *_, path in list_checkpoints(str(out))}
    # what a kill inside save_checkpoint leaves behind (MindSpore's temporary file of our temporary)
    unfinished = out / f"shufflenetv1-{epoch}_{STEPS}.ckpt.tmp-{proc.pid}.tmp"
    unfinished.write_bytes(b"half a checkpoint")

    proc2 = run(data, out, tmp_path)
    assert f"removed {unfinished}: an unfinished checkpoint write of a killed run" in proc2.stdout
    assert f"resume auto: continuing from {newest} (epoch {epoch}, step {step})" in proc2.stdout
    assert_same_run(out, reference, resumed_after)
    # nothing else was lost or replaced: the earlier log, the config; checkpoints rotated as usual
    assert (out / "eval_log.txt").read_text().startswith("result:{'Top_1_Acc': 0.5}")
    assert (out / "config.yaml").read_text() == config_before
    names = [os.path.basename(p) for *_, p in list_checkpoints(str(out))]
    # keep_checkpoint_max 2, and the recovery point among the two newest checkpoints (step 16)
    assert names == [f"shufflenetv1-{EPOCHS - 1}_{STEPS}.ckpt", f"shufflenetv1-{EPOCHS}_4.ckpt",
                     f"shufflenetv1-{EPOCHS}_{STEPS}.ckpt"]
    assert not [n for n in os.listdir(out) if ".tmp" in n]
    for path, size in sizes.items():  # a checkpoint still there was not rewritten
        if os.path.exists(path):
            assert os.path.getsize(path) == size


def test_sigterm_mid_epoch_saves_that_step_and_the_run_continues_there(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    wait_until(proc, lambda: max(steps_logged(out), default=0) >= STEPS + 2)  # inside epoch 2
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopped by SIGTERM: saved " in stderr and "--resume auto" in stderr
    saved = stderr.split("saved ")[1].split(". To continue")[0]
    assert os.path.isfile(saved) and verify_checkpoint(saved) is None
    epoch, step, _ = next(item for item in list_checkpoints(str(out)) if item[2] == saved)
    stopped_at = (epoch - 1) * STEPS + step
    assert stopped_at == max(steps_logged(out))  # the step it finished, not an earlier one
    proc2 = run(data, out, tmp_path)
    if step < STEPS:
        assert f"saved at step {step}/{STEPS} of epoch {epoch}; continuing at step {step + 1}" in proc2.stdout
    assert_same_run(out, reference, stopped_at)


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_still_ends_exactly(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = start(data, out, tmp_path)
    wait_until(proc, lambda: len(list_checkpoints(str(out))) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = list_checkpoints(str(out))
    newest, previous = found[-1][2], found[-2]
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 2)
    assert verify_checkpoint(newest)
    proc2 = run(data, out, tmp_path)
    assert f"warning: skipping damaged checkpoint {newest}" in proc2.stdout
    assert f"continuing from {previous[2]} (epoch {previous[0]}, step {previous[1]})" in proc2.stdout
    assert_same_run(out, reference, (previous[0] - 1) * STEPS + previous[1])


def test_atomic_write_leaves_no_partial_file(tmp_path):
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


def test_replace_when_done_keeps_the_old_file_on_failure(tmp_path):
    """The one write-then-rename of checkpoints, exports, curves, label files and converted weights."""
    from src.model_utils.files import replace_when_done
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replace_when_done(str(target), str(tmp_path / "out.txt.partial")) as temp:
            with open(temp, "w", encoding="utf-8") as fh:
                fh.write("half")
            raise RuntimeError("write failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with replace_when_done(str(target), str(tmp_path / "out.txt.partial")) as temp:
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_disk_full_is_refused_before_training(tmp_path, monkeypatch):
    import shutil
    import train
    from src.shufflenetv1 import ShuffleNetV1
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=5 << 20))
    with pytest.raises(ValueError, match=r"not enough disk space in .*: 5 MiB free, the run needs about"):
        train.check_free_space(str(tmp_path), ShuffleNetV1("0.5x", 3, 3), keep_max=5)


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
