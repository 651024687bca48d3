"""End to end through the real entry points (subprocesses) on tiny generated data."""
import json
import os
import shutil
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from src.synthetic import make_shapes_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, STEPS = 4, 6  # 72 training images / batch 12
COMMON = ["--device_target", "CPU", "--amp_level", "O0", "--model_size", "0.5x", "--group", "3",
          "--num_classes", "3", "--image_size", "32"]
TRAIN = COMMON + ["--batch_size", "12", "--epoch_size", str(EPOCHS), "--lr_max", "0.0003", "--warmup_epochs", "1",
                  "--keep_checkpoint_max", "3", "--num_parallel_workers", "1"]

pytestmark = pytest.mark.slow


def run(script, args, cwd, check=True):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def records(directory):
    with open(os.path.join(directory, "train_log.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=24, val_per_class=8, image_size=40)


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    """A straight 4-epoch run; later tests read its outputs."""
    out = tmp_path_factory.mktemp("straight")
    proc = run("train.py", TRAIN + ["--train_dataset_path", data[0], "--save_ckpt_path", str(out / "ckpt")], out)
    return out / "ckpt", proc.stdout


def test_training_progress_checkpoints_and_curves(straight_run):
    ckpt_dir, stdout = straight_run
    logged = records(ckpt_dir)
    assert [r["epoch"] for r in logged] == [1, 2, 3, 4]
    assert logged[-1]["loss"] < logged[0]["loss"], [r["loss"] for r in logged]
    assert [r["optimizer_step"] for r in logged] == [STEPS * e for e in range(1, EPOCHS + 1)]
    # the seed's line and the readable one
    assert "epoch time:" in stdout and "per step time:" in stdout and "avg loss:" in stdout
    assert "epoch 4/4: loss" in stdout and "img/s" in stdout and "ETA" in stdout
    # keep_checkpoint_max=3: the oldest is gone, original names
    names = sorted(n for n in os.listdir(ckpt_dir) if n.endswith(".ckpt"))
    assert names == [f"shufflenetv1-{e}_{STEPS}.ckpt" for e in (2, 3, 4)]
    assert (ckpt_dir / "config.yaml").is_file()
    with Image.open(ckpt_dir / "curves.png") as img:
        assert img.size == (840, 300) and img.format == "PNG"


def test_lr_follows_the_schedule(straight_run):
    from src.lr_generator import get_lr
    lr = get_lr(0.0, 0.0, 0.0003, 1, EPOCHS, STEPS, "cosine")
    for r in records(straight_run[0]):
        assert r["lr_first"] == pytest.approx(float(lr[(r["epoch"] - 1) * STEPS]))
        assert r["lr_last"] == pytest.approx(float(lr[r["epoch"] * STEPS - 1]))


def test_eval_reports_and_appends_to_eval_log(straight_run, data, tmp_path):
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    args = COMMON + ["--eval_dataset_path", data[1], "--ckpt_path", str(ckpt), "--batch_size", "5"]
    first = run("eval.py", args, tmp_path)
    run("eval.py", args, tmp_path)
    line = next(line for line in first.stdout.splitlines() if line.startswith("result:"))
    assert line.startswith("result:{'Loss': ") and "'Top_1_Acc': " in line and "'Top_5_Acc': 1.0" in line
    assert f"ckpt:'{ckpt}', time: " in line
    log = (straight_run[0] / "eval_log.txt").read_text().splitlines()
    assert len(log) >= 2 and log[0] == line  # appended, not overwritten


def test_resume_continues_the_same_schedule(straight_run, data, tmp_path):
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight_run[0] / f"shufflenetv1-2_{STEPS}.ckpt", resumed)
    proc = run("train.py", TRAIN + ["--train_dataset_path", data[0], "--save_ckpt_path", str(resumed),
                                    "--resume", "auto"], tmp_path)
    assert f"resume auto: continuing from {resumed / f'shufflenetv1-2_{STEPS}.ckpt'}" in proc.stdout
    straight = {r["epoch"]: r for r in records(straight_run[0])}
    again = records(resumed)
    assert [r["epoch"] for r in again] == [3, 4]
    for r in again:
        assert r["loss"] < 1.5 * straight[r["epoch"]]["loss"], (r, straight[r["epoch"]])  # no blow-up
        assert r["optimizer_step"] == straight[r["epoch"]]["optimizer_step"]
        assert r["lr_first"] == straight[r["epoch"]]["lr_first"]
        assert r["lr_last"] == straight[r["epoch"]]["lr_last"]
    assert sorted(n for n in os.listdir(resumed) if n.endswith(".ckpt")) == \
        [f"shufflenetv1-{e}_{STEPS}.ckpt" for e in (2, 3, 4)]


def test_restore_loads_the_saved_weights_and_optimizer_state(straight_run):
    import train
    from src.model_utils.config import load_config
    from src.model_factory import create_network
    cfg = load_config(os.path.join(ROOT, "default_config.yaml"),
                      {"model_size": "0.5x", "num_classes": "3", "epoch_size": str(EPOCHS), "conv_impl": "plain"})
    path = str(straight_run[0] / f"shufflenetv1-3_{STEPS}.ckpt")
    saved = ms.load_checkpoint(path)
    net = create_network(cfg)
    start_epoch, opt_state, _ = train.restore(net, cfg, path)
    assert start_epoch == 3
    for name, param in net.parameters_and_names():
        np.testing.assert_array_equal(param.asnumpy(), saved[name].asnumpy(), err_msg=name)
    assert int(opt_state["global_step"].asnumpy()) == 3 * STEPS
    moments = [k for k in opt_state if k.startswith("moments.")]
    assert len(moments) == len(net.trainable_params())
    assert any(np.any(opt_state[k].asnumpy() != 0) for k in moments)
    # Restoring the optimizer must fill its momenta and step, and leave the weights alone.
    from src.lr_generator import get_lr
    opt = train.build_optimizer(net, cfg, get_lr(0.0, 0.0, 0.0003, 1, EPOCHS, STEPS, "cosine"))
    train.restore_optimizer(opt, opt_state)
    for param in opt.get_parameters():
        if param.name in saved and (param.name.startswith("moments.") or param.name == "global_step"
                                    or param.name in dict(net.parameters_and_names())):
            np.testing.assert_array_equal(param.asnumpy(), saved[param.name].asnumpy(), err_msg=param.name)


def test_finished_run_resumed_has_nothing_to_do(straight_run, data, tmp_path):
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    proc = run("train.py", TRAIN + ["--train_dataset_path", data[0], "--save_ckpt_path", str(tmp_path / "x"),
                                    "--resume", str(ckpt)], tmp_path)
    assert "nothing to do: the checkpoint already has 4 epochs" in proc.stdout


def _bad_data_cases(tmp_path, data):
    missing = tmp_path / "missing"
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    shutil.copytree(data[0], no_images)
    for name in os.listdir(no_images / "vstripes"):
        os.remove(no_images / "vstripes" / name)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(data[0], corrupt)
    bad = corrupt / "checker" / "checker_0003.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    return [(missing, f"'{missing}' does not exist or is not a directory"),
            (empty, f"'{empty}' holds no class folders"),
            (no_images, f"class folder '{no_images / 'vstripes'}' holds no images"),
            (corrupt, f"cannot decode image '{bad}'")]


def test_bad_data_gives_a_message_naming_the_path(data, tmp_path):
    for folder, message in _bad_data_cases(tmp_path, data):
        proc = run("train.py", TRAIN + ["--train_dataset_path", str(folder), "--save_ckpt_path",
                                        str(tmp_path / "out"), "--epoch_size", "1"], tmp_path, check=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_eval_errors_are_clear(straight_run, data, tmp_path):
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    wrong_variant = run("eval.py", COMMON + ["--eval_dataset_path", data[1], "--ckpt_path", str(ckpt),
                                             "--model_size", "1.0x"], tmp_path, check=False)
    assert wrong_variant.returncode == 1
    assert "first_conv.0.weight: checkpoint (12, 3, 3, 3), network (24, 3, 3, 3)" in wrong_variant.stderr
    missing = run("eval.py", COMMON + ["--eval_dataset_path", data[1], "--ckpt_path", str(tmp_path / "no.ckpt")],
                  tmp_path, check=False)
    assert missing.returncode == 1 and "no.ckpt' does not exist" in missing.stderr
    typo = run("eval.py", COMMON + ["--eval_dataset_pth", data[1]], tmp_path, check=False)
    assert typo.returncode == 2 and "did you mean 'eval_dataset_path'?" in typo.stderr


def test_unwritable_output_folder_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run("train.py", TRAIN + ["--train_dataset_path", data[0], "--save_ckpt_path", str(blocker / "sub")],
               tmp_path, check=False)
    assert proc.returncode == 1 and "is not writable" in proc.stderr and "--save_ckpt_path" in proc.stderr


def test_more_class_folders_than_num_classes_is_refused_up_front(straight_run, data, tmp_path):
    def two_classes(args):
        args = list(args)
        args[args.index("--num_classes") + 1] = "2"
        return args
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    train = run("train.py", two_classes(TRAIN) + ["--train_dataset_path", data[0], "--save_ckpt_path",
                                                  str(tmp_path / "out"), "--epoch_size", "1"], tmp_path, check=False)
    assert train.returncode == 1, train.stderr[-2000:]
    assert f"'{data[0]}' has 3 class folders (checker, hstripes, vstripes) but num_classes=2; pass --num_classes 3" \
        in train.stderr
    assert "epoch 1" not in train.stdout  # refused before training, not after an epoch
    ev = run("eval.py", two_classes(COMMON) + ["--eval_dataset_path", data[1], "--ckpt_path", str(ckpt)], tmp_path,
             check=False)
    assert ev.returncode == 1 and "but num_classes=2; pass --num_classes 3" in ev.stderr, ev.stderr[-2000:]
