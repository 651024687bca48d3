"""End to end through the real entry points (subprocesses) on tiny generated data: training output,
schedule, evaluation of any variant from the checkpoint alone, resume, used folders, user errors."""
import os
import shutil

import mindspore as ms
import numpy as np
import pytest
from PIL import Image

from helpers import read_jsonl, run_entry
from src.synthetic import make_shapes_dataset

EPOCHS, STEPS = 4, 6  # 72 training images / batch 12
COMMON = ["--device_target", "CPU", "--image_size", "32"]
TRAIN = COMMON + ["--model_size", "0.5x", "--group", "3", "--num_classes", "3", "--batch_size", "12",
                  "--epoch_size", str(EPOCHS), "--lr_max", "0.0003", "--warmup_epochs", "1", "--keep_checkpoint_max",
                  "3", "--num_parallel_workers", "1"]
QUICK = ["--mode", "PYNATIVE", "--epoch_size", "1"]  # runs that stop early: no graph to compile

pytestmark = pytest.mark.slow


def train(args, cwd, check=True):
    # the runs in GRAPH mode are all of TRAIN's network and settings: one compile for all
    return run_entry("train.py", TRAIN + args, cwd, check=check,
                     compile_cache=None if "PYNATIVE" in args else "train_eval")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=24, val_per_class=8, image_size=40)


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    """A straight 4-epoch run; later tests read its outputs."""
    out = tmp_path_factory.mktemp("straight")
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(out / "ckpt")], out)
    return out / "ckpt", proc.stdout, proc.stderr


def test_training_progress_checkpoints_and_curves(straight_run):
    ckpt_dir, stdout, _ = straight_run
    logged = read_jsonl(ckpt_dir / "train_log.jsonl")
    assert [r["epoch"] for r in logged] == [1, 2, 3, 4]
    assert logged[-1]["loss"] < logged[0]["loss"], [r["loss"] for r in logged]
    assert [r["optimizer_step"] for r in logged] == [STEPS * e for e in range(1, EPOCHS + 1)]
    assert [r["global_step"] for r in logged] == [STEPS * e for e in range(1, EPOCHS + 1)]
    # the seed's line and the readable one; default_config.yaml's O3 becomes float32 on CPU, said once
    assert "epoch time:" in stdout and "per step time:" in stdout and "avg loss:" in stdout
    assert "epoch 4/4: loss" in stdout and "img/s" in stdout and "ETA" in stdout
    assert stdout.count("note: amp_level=O3 is for GPU/Ascend; on CPU training computes in float32") == 1
    assert "on CPU (amp_level O0)" in stdout
    # keep_checkpoint_max=3: the oldest is gone, original names
    names = sorted(n for n in os.listdir(ckpt_dir) if n.endswith(".ckpt"))
    assert names == [f"shufflenetv1-{e}_{STEPS}.ckpt" for e in (2, 3, 4)]
    assert (ckpt_dir / "config.yaml").is_file()
    with Image.open(ckpt_dir / "curves.png") as img:
        assert img.size == (840, 300) and img.format == "PNG"
    # every checkpoint says what network it holds and how it was trained
    params = ms.load_checkpoint(str(ckpt_dir / f"shufflenetv1-4_{STEPS}.ckpt"))
    assert (params["model_size"], int(params["group"].asnumpy()), int(params["num_classes"].asnumpy()),
            int(params["image_size"].asnumpy()), params["pool_pad"]) == ("0.5x", 3, 3, 32, "same")


def test_graph_mode_training_on_the_cpu_kernels_is_quiet_and_updates_bn_statistics(straight_run):
    """Unused kernel outputs once made graph mode warn ("side effect nodes were eliminated by mistake")
    for every BN of the network on every compile; the native BN must still update its moving statistics
    (nn.BatchNorm2d starts them at 0 and 1)."""
    ckpt_dir, _, stderr = straight_run
    assert "eliminated by mistake" not in stderr, stderr[-3000:]
    params = ms.load_checkpoint(str(ckpt_dir / f"shufflenetv1-4_{STEPS}.ckpt"))
    # (the BNs after convolutions of zero-mean inputs keep a moving mean of about 0: these two see ReLU outputs)
    for name in ("first_conv.1.moving_mean", "features.5.branch_main_1.1.moving_mean"):
        assert np.abs(params[name].asnumpy()).max() > 1e-3, name
    assert np.abs(params["features.5.branch_main_1.1.moving_variance"].asnumpy() - 1).max() > 1e-3


def test_lr_follows_the_schedule(straight_run):
    from src.lr_generator import get_lr
    lr = get_lr(0.0, 0.0, 0.0003, 1, EPOCHS, STEPS, "cosine")
    for r in read_jsonl(straight_run[0] / "train_log.jsonl"):
        assert r["lr_first"] == pytest.approx(float(lr[(r["epoch"] - 1) * STEPS]))
        assert r["lr_last"] == pytest.approx(float(lr[r["epoch"] * STEPS - 1]))


def test_eval_needs_only_the_data_and_the_checkpoint(straight_run, data, tmp_path):
    """default_config.yaml says 2.0x g3, 1000 classes; the checkpoint's 0.5x, 3 classes is used."""
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    args = ["--device_target", "CPU", "--eval_dataset_path", data[1], "--ckpt_path", str(ckpt), "--batch_size", "5"]
    first = run_entry("eval.py", args + ["--image_size", "32"], tmp_path)
    assert f"using model_size=0.5x recorded in {ckpt} (the config said 2.0x)" in first.stdout
    assert "using num_classes=3" in first.stdout and "warning" not in first.stdout
    line = next(line for line in first.stdout.splitlines() if line.startswith("result:"))
    assert line.startswith("result:{'Loss': ") and "'Top_1_Acc': " in line and "'Top_5_Acc': 1.0" in line
    assert f"ckpt:'{ckpt}', time: " in line
    # at the config's 224 px, not the 32 px it was trained at: a warning naming both, and still a result
    second = run_entry("eval.py", args, tmp_path)
    assert "warning: image_size=224, but the network" in second.stdout and "trained at 32 px" in second.stdout
    log = (straight_run[0] / "eval_log.txt").read_text().splitlines()
    assert len(log) >= 2 and log[0] == line  # appended, not overwritten


def test_resume_from_an_epoch_checkpoint_continues_exactly(straight_run, data, tmp_path):
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight_run[0] / f"shufflenetv1-2_{STEPS}.ckpt", resumed)
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(resumed), "--resume", "auto",
                  "--exact_data_resume", "True"], tmp_path)  # (default_config.yaml: off, for ImageNet's sake)
    assert f"resume auto: continuing from {resumed / f'shufflenetv1-2_{STEPS}.ckpt'}" in proc.stdout
    assert f"data: replaying the pipeline over the {2 * STEPS * 12} images before the resume step" in proc.stdout
    assert "epochs 3-4" in proc.stdout
    straight = {r["epoch"]: r for r in read_jsonl(straight_run[0] / "train_log.jsonl")}
    again = read_jsonl(resumed / "train_log.jsonl")
    assert [r["epoch"] for r in again] == [3, 4]
    for r in again:  # the same images, augmentation and LR steps: the same losses, to the bit
        for key in ("loss", "optimizer_step", "lr_first", "lr_last"):
            assert r[key] == straight[r["epoch"]][key], (key, r, straight[r["epoch"]])
    final = ms.load_checkpoint(str(resumed / f"shufflenetv1-4_{STEPS}.ckpt"))
    reference = ms.load_checkpoint(str(straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"))
    for name, value in reference.items():
        if hasattr(value, "asnumpy"):
            np.testing.assert_array_equal(final[name].asnumpy(), value.asnumpy(), err_msg=name)


def test_restore_loads_the_saved_weights_and_optimizer_state(straight_run):
    from src.checkpoint_utils import restore_training_state
    from src.lr_generator import get_lr
    from src.model_factory import create_network
    from src.model_utils.config import load_config
    from src.optimizer import build_optimizer, restore_optimizer
    cfg = load_config(None, {"model_size": "0.5x", "num_classes": "3", "epoch_size": str(EPOCHS)})
    path = str(straight_run[0] / f"shufflenetv1-3_{STEPS}.ckpt")
    saved = ms.load_checkpoint(path)
    net = create_network(cfg)
    state = restore_training_state(net, path, STEPS)
    assert state.start_step == 3 * STEPS
    for name, param in net.parameters_and_names():
        np.testing.assert_array_equal(param.asnumpy(), saved[name].asnumpy(), err_msg=name)
    assert int(state.optimizer_state["global_step"].asnumpy()) == 3 * STEPS
    moments = [k for k in state.optimizer_state if k.startswith("moments.")]
    assert len(moments) == len(net.trainable_params())
    assert any(np.any(state.optimizer_state[k].asnumpy() != 0) for k in moments)
    # Restoring the optimizer must fill its momenta and step, and leave the weights alone.
    opt = build_optimizer(net, cfg, get_lr(0.0, 0.0, 0.0003, 1, EPOCHS, STEPS, "cosine"))
    restore_optimizer(opt, state.optimizer_state)
    for param in opt.get_parameters():
        if param.name in saved and (param.name.startswith("moments.") or param.name == "global_step"
                                    or param.name in dict(net.parameters_and_names())):
            np.testing.assert_array_equal(param.asnumpy(), saved[param.name].asnumpy(), err_msg=param.name)


def test_finished_run_resumed_has_nothing_to_do(straight_run, data, tmp_path):
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(tmp_path / "x"), "--resume", str(ckpt)]
                 + QUICK[:2], tmp_path)
    assert f"nothing to do: the checkpoint is at step {EPOCHS * STEPS}" in proc.stdout


def test_a_new_run_never_replaces_an_earlier_one(straight_run, data, tmp_path):
    ckpt_dir = straight_run[0]
    before = {name: os.path.getmtime(ckpt_dir / name) for name in os.listdir(ckpt_dir)}
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(ckpt_dir)] + QUICK, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: save_ckpt_path '{ckpt_dir}' already holds another run (shufflenetv1-2_{STEPS}.ckpt" in proc.stderr
    assert "Continue that run with --resume auto, or start a new one with another --save_ckpt_path" in proc.stderr
    assert {name: os.path.getmtime(ckpt_dir / name) for name in os.listdir(ckpt_dir)} == before
    # the same for weights from elsewhere (a new fine-tuning run into the old folder)
    other = tmp_path / "pretrained.ckpt"
    shutil.copy(ckpt_dir / f"shufflenetv1-3_{STEPS}.ckpt", other)
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(ckpt_dir), "--resume", str(other)]
                 + QUICK, tmp_path, check=False)
    assert proc.returncode == 2 and "already holds another run" in proc.stderr
    assert {name: os.path.getmtime(ckpt_dir / name) for name in os.listdir(ckpt_dir)} == before
    # one of the folder's own checkpoints: its run continues (here it is already past epoch_size 1)
    copy = tmp_path / "copy"
    shutil.copytree(ckpt_dir, copy)
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(copy), "--resume",
                  str(copy / f"shufflenetv1-3_{STEPS}.ckpt")] + QUICK, tmp_path)
    assert "nothing to do" in proc.stdout


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
    return [(missing, f"train_dataset_path='{missing}' is not a directory", 2),
            (empty, f"'{empty}' holds no class folders", 1),
            (no_images, f"class folder '{no_images / 'vstripes'}' holds no images", 1),
            (corrupt, f"cannot decode image '{bad}'", 1)]


def test_bad_data_gives_a_message_naming_the_path(data, tmp_path):
    for number, (folder, message, code) in enumerate(_bad_data_cases(tmp_path, data)):
        proc = train(["--train_dataset_path", str(folder), "--save_ckpt_path", str(tmp_path / f"out{number}")]
                     + QUICK, tmp_path, check=False)
        assert proc.returncode == code, proc.stderr[-2000:]
        assert message in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_eval_errors_are_clear(straight_run, data, tmp_path):
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    wrong_variant = run_entry("eval.py", COMMON + ["--eval_dataset_path", data[1], "--ckpt_path", str(ckpt),
                                                   "--model_size", "1.0x"], tmp_path, check=False)
    assert wrong_variant.returncode == 2
    assert f"--model_size 1.0x contradicts {ckpt}: the checkpoint is 0.5x g3: stem 12, stage 2 120 channels" \
        in wrong_variant.stderr
    missing = run_entry("eval.py", COMMON + ["--eval_dataset_path", data[1], "--ckpt_path",
                                             str(tmp_path / "no.ckpt")], tmp_path, check=False)
    assert missing.returncode == 2 and "no.ckpt' is not a file" in missing.stderr
    typo = run_entry("eval.py", COMMON + ["--eval_dataset_pth", data[1]], tmp_path, check=False)
    assert typo.returncode == 2 and "did you mean 'eval_dataset_path'?" in typo.stderr
    for proc in (wrong_variant, missing, typo):
        assert "Traceback" not in proc.stderr


def test_unwritable_output_folder_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = train(["--train_dataset_path", data[0], "--save_ckpt_path", str(blocker / "sub")] + QUICK, tmp_path,
                 check=False)
    assert proc.returncode == 2 and "is not writable" in proc.stderr and "--save_ckpt_path" in proc.stderr


def test_more_class_folders_than_num_classes_is_refused_up_front(straight_run, data, tmp_path):
    two = [arg if arg != "3" or TRAIN[i - 1] != "--num_classes" else "2" for i, arg in enumerate(TRAIN)]
    proc = run_entry("train.py", two + ["--train_dataset_path", data[0], "--save_ckpt_path", str(tmp_path / "out")]
                     + QUICK, tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"'{data[0]}' has 3 class folders (checker, hstripes, vstripes) but num_classes=2; pass --num_classes 3" \
        in proc.stderr
    assert "epoch 1" not in proc.stdout  # refused before training, not after an epoch
    # eval: the checkpoint's 3 classes are used; a folder of more classes than it has is refused
    more = tmp_path / "more"
    shutil.copytree(data[1], more)
    shutil.copytree(more / "checker", more / "zigzag")
    ckpt = straight_run[0] / f"shufflenetv1-4_{STEPS}.ckpt"
    ev = run_entry("eval.py", COMMON + ["--eval_dataset_path", str(more), "--ckpt_path", str(ckpt)], tmp_path,
                   check=False)
    assert ev.returncode == 1 and "has 4 class folders" in ev.stderr and "but num_classes=3" in ev.stderr
