"""Tests of tools/convert_megvii.py against a PyTorch network written here from the facts of
Megvii's ShuffleNet-Series ShuffleNetV1 (module names, shuffle after the depthwise conv,
padding-1 pooling, classifier without bias), with random weights.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

torch = pytest.importorskip("torch", reason="the Megvii conversion tests need torch (requirements-test.txt)")
from torch import nn  # noqa: E402

from src.checkpoint_utils import load_pretrained, read_checkpoint, read_recorded  # noqa: E402
from src.model_utils.config import load_config  # noqa: E402
from src.synthetic import make_shapes_dataset  # noqa: E402
from src.shufflenetv1 import ShuffleNetV1  # noqa: E402
from tools import convert_megvii  # noqa: E402
from tools.convert_megvii import ConversionError, main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 0.5x channels (stem, stage2, stage3, stage4) of the published architecture.
MEGVII_CHANNELS = {3: (12, 120, 240, 480), 8: (16, 192, 384, 768)}
NUM_CLASSES = 10


def megvii_shuffle(x, group):
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels // group, group, height, width).permute(0, 2, 1, 3, 4)
    return x.reshape(batch, channels, height, width)


class MegviiUnit(nn.Module):
    def __init__(self, inp, oup, group, first_group, mid, stride):
        super().__init__()
        self.group, self.stride = group, stride
        outputs = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, 1, 0, groups=1 if first_group else group, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.branch_main_2 = nn.Sequential(nn.Conv2d(mid, outputs, 1, 1, 0, groups=group, bias=False),
                                           nn.BatchNorm2d(outputs))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, 2, 1)

    def forward(self, x):
        main = self.branch_main_1(x)
        if self.group > 1:
            main = megvii_shuffle(main, self.group)
        main = self.branch_main_2(main)
        if self.stride == 1:
            return torch.relu(x + main)
        return torch.cat((self.branch_proj(x), torch.relu(main)), 1)


class MegviiNet(nn.Module):
    """Megvii's ShuffleNetV1 (global average pooling, so small test images work)."""

    def __init__(self, group, num_classes=NUM_CLASSES):
        super().__init__()
        stem, *stages = MEGVII_CHANNELS[group]
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                        nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, inp = [], stem
        for stage, (oup, repeats) in enumerate(zip(stages, (4, 8, 4))):
            for i in range(repeats):
                units.append(MegviiUnit(inp, oup, group, first_group=stage == 0 and i == 0, mid=oup // 4,
                                        stride=2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.classifier = nn.Sequential(nn.Linear(inp, num_classes, bias=False))

    def forward(self, x):
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(x.mean(dim=(2, 3)))


def random_megvii(group, seed, num_classes=NUM_CLASSES):
    """An eval-mode MegviiNet whose every weight and BN statistic is random."""
    net = MegviiNet(group, num_classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                new = torch.rand(value.shape, generator=gen) + 0.5
            elif name.endswith("weight") and value.ndim == 1:  # BN gamma
                new = torch.rand(value.shape, generator=gen) * 0.4 + 0.2
            elif value.ndim == 1:  # BN beta, running_mean
                new = torch.randn(value.shape, generator=gen) * 0.1
            else:
                new = torch.randn(value.shape, generator=gen) / float(np.prod(value.shape[1:])) ** 0.5
            value.copy_(new)
    return net.eval()


@pytest.fixture(scope="module")
def megvii(tmp_path_factory):
    """group -> (their eval-mode net, path of its .pth.tar). g3 in Megvii's saved form
    ({"state_dict": ...} with the DataParallel "module." prefix), g8 as a bare state_dict."""
    folder = tmp_path_factory.mktemp("megvii")
    result = {}
    for group, seed in ((3, 21), (8, 22)):
        net = random_megvii(group, seed)
        state = net.state_dict()
        path = str(folder / f"ShuffleNetV1_0.5x_g{group}.pth.tar")
        if group == 3:
            torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
        else:
            torch.save(state, path)
        result[group] = (net, path)
    return result


def images(seed=0):
    # 48 x 64 gives odd feature maps (3 x 4 before stage 4), where pooling paddings differ.
    return np.random.RandomState(seed).normal(size=(2, 3, 48, 64)).astype(np.float32)


def ours(ckpt, group, pool_pad="symmetric"):
    net = ShuffleNetV1("0.5x", group, num_classes=NUM_CLASSES, pool_pad=pool_pad)
    load_pretrained(net, ckpt)
    net.set_train(False)
    return net


def test_g3_converted_network_computes_megvii_function(megvii, tmp_path, capsys):
    net, path = megvii[3]
    output = str(tmp_path / "g3.ckpt")
    assert main(["--pth", path, "--model_size", "0.5x", "--group", "3", "--output", output]) == 0
    assert "python eval.py --ckpt_path" in capsys.readouterr().out
    assert read_recorded(read_checkpoint(output)) == {"model_size": "0.5x", "group": 3, "num_classes": NUM_CLASSES,
                                                      "pool_pad": "symmetric", "input_format": "bgr_255"}
    x = images(3)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(output, 3)(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)
    # The pooling option matters at this size: the model zoo's "same" pooling is far off.
    assert np.abs(ours(output, 3, pool_pad="same")(ms.Tensor(x)).asnumpy() - expected).max() > 1e-2


@pytest.mark.slow
def test_g8_converted_by_the_command_line_computes_megvii_function(megvii, tmp_path):
    net, path = megvii[8]
    output = str(tmp_path / "g8.ckpt")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_megvii.py"), "--pth", path,
                           "--model_size", "0.5x", "--group", "8", "--output", output],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "ShuffleNetV1 0.5x g8, 10 classes" in done.stdout
    x = images(8)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(output, 8)(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)


def test_depthwise_and_bn_channels_follow_the_shuffle(megvii):
    state = convert_megvii.read_state_dict(megvii[3][1])
    converted = convert_megvii.convert_state_dict(state, "0.5x", 3)
    theirs = state["features.1.branch_main_1.3.weight"]  # mid = 30 channels, 10 per group
    ours_dw = converted["features.1.branch_main_2.0.weight"]
    # Our shuffle puts input channels 0, 3, 6, ..., 27, 1, 4, ... at positions 0, 1, 2, ...
    np.testing.assert_array_equal(ours_dw[1], theirs[3])
    np.testing.assert_array_equal(ours_dw[10], theirs[1])
    np.testing.assert_array_equal(converted["features.1.branch_main_2.1.moving_variance"][11],
                                  state["features.1.branch_main_1.4.running_var"][4])
    np.testing.assert_array_equal(converted["classifier.bias"], np.zeros(NUM_CLASSES, np.float32))
    assert "features.0.branch_main_1.0.weight" in converted  # the "module." prefix is gone


def run_failing(argv, capsys, code=1):
    assert main(argv) == code  # 2: an argument is wrong (the file fits another one), 1: the file is unusable
    return capsys.readouterr().err


def test_wrong_variant_is_named_with_the_matching_one(megvii, tmp_path, capsys):
    output = tmp_path / "wrong.ckpt"
    err = run_failing(["--pth", megvii[3][1], "--model_size", "1.0x", "--group", "3",
                       "--output", str(output)], capsys, code=2)
    assert "does not match Megvii's ShuffleNetV1 1.0x g3" in err
    assert "first_conv.0.weight has shape (12, 3, 3, 3), expected (24, 3, 3, 3)" in err
    assert "its shapes match --model_size 0.5x --group 3" in err
    assert not output.exists()
    err = run_failing(["--pth", megvii[8][1], "--model_size", "0.5x", "--group", "3",
                       "--output", str(output)], capsys, code=2)
    assert "its shapes match --model_size 0.5x --group 8" in err


def test_other_network_matches_no_variant(tmp_path, capsys):
    path = str(tmp_path / "other.pth.tar")
    torch.save({"conv1.weight": torch.zeros(24, 3, 3, 3), "fc.weight": torch.zeros(1000, 1024)}, path)
    err = run_failing(["--pth", path, "--model_size", "0.5x", "--group", "3",
                       "--output", str(tmp_path / "o.ckpt")], capsys)
    assert "matches none of the 8 ShuffleNetV1 variants" in err
    assert "unexpected entries, e.g. conv1.weight" in err


class NotWeights:
    """A pickled Python object, which torch's safe loading must refuse."""


@pytest.mark.parametrize("content, message", [
    ([1, 2, 3], "holds a list, not a state_dict"),
    ({"state_dict": {"first_conv.0.weight": 3}}, "entry 'first_conv.0.weight' holds a int, not a tensor"),
    (NotWeights(), "cannot be read with torch.load(weights_only=True)"),
])
def test_file_that_is_not_a_state_dict(tmp_path, capsys, content, message):
    path = str(tmp_path / "bad.pth.tar")
    torch.save(content, path)
    err = run_failing(["--pth", path, "--model_size", "0.5x", "--group", "3",
                       "--output", str(tmp_path / "o.ckpt")], capsys)
    assert message in err


def test_damaged_or_absent_file(megvii, tmp_path, capsys):
    with open(megvii[3][1], "rb") as handle:
        data = handle.read()
    damaged = tmp_path / "damaged.pth.tar"
    damaged.write_bytes(data[:len(data) // 3])
    err = run_failing(["--pth", str(damaged), "--model_size", "0.5x", "--group", "3",
                       "--output", str(tmp_path / "o.ckpt")], capsys)
    assert "cannot be read with torch.load(weights_only=True): it is damaged" in err
    err = run_failing(["--pth", str(tmp_path / "absent.pth.tar"), "--model_size", "0.5x", "--group", "3",
                       "--output", str(tmp_path / "o.ckpt")], capsys, code=2)
    assert "does not exist" in err
    err = run_failing(["--pth", megvii[3][1], "--model_size", "0.5x", "--group", "3",
                       "--output", str(tmp_path / "o.bin")], capsys, code=2)
    assert "must end with .ckpt" in err
    assert sorted(os.listdir(tmp_path)) == ["damaged.pth.tar"]


def test_missing_torch_is_explained(megvii, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ConversionError, match=r"needs PyTorch.*pip install torch"):
        convert_megvii.read_state_dict(megvii[3][1])


@pytest.mark.slow
def test_importing_the_project_does_not_import_torch():
    code = ("import sys; import src.checkpoint_utils, src.shufflenetv1, tools.convert_megvii; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def converted_0_5x_g3(tmp_path, num_classes, seed):
    """A random Megvii 0.5x g3 file of ``num_classes`` classes, converted; returns the .ckpt path."""
    pth = str(tmp_path / f"megvii_{num_classes}.pth.tar")
    torch.save({"state_dict": random_megvii(3, seed=seed, num_classes=num_classes).state_dict()}, pth)
    ckpt = str(tmp_path / f"megvii_{num_classes}.ckpt")
    assert main(["--pth", pth, "--model_size", "0.5x", "--group", "3", "--output", ckpt]) == 0
    return ckpt


@pytest.mark.slow
def test_eval_adopts_the_recorded_options(tmp_path):
    _, val = make_shapes_dataset(str(tmp_path / "data"), num_classes=4, train_per_class=1, val_per_class=2,
                                 image_size=64)
    ckpt = converted_0_5x_g3(tmp_path, num_classes=4, seed=5)
    # only the checkpoint and the data: the variant from the shapes, the options from the records
    done = subprocess.run([sys.executable, "eval.py", "--device_target", "CPU", "--mode", "PYNATIVE",
                           "--ckpt_path", ckpt, "--eval_dataset_path", val, "--image_size", "64", "--batch_size", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"using pool_pad=symmetric recorded in {ckpt}" in done.stdout
    assert f"using input_format=bgr_255 recorded in {ckpt}" in done.stdout
    assert f"using model_size=0.5x recorded in {ckpt}" in done.stdout and "using num_classes=4" in done.stdout
    assert "Top_1_Acc" in done.stdout


@pytest.mark.slow
def test_train_resume_from_converted_weights_adopts_and_keeps_the_options(tmp_path):
    train_dir, _ = make_shapes_dataset(str(tmp_path / "data"), num_classes=2, train_per_class=4, val_per_class=1,
                                       image_size=48)
    ckpt = converted_0_5x_g3(tmp_path, num_classes=2, seed=6)
    out_dir = tmp_path / "finetune"
    done = subprocess.run([sys.executable, "train.py", "--device_target", "CPU", "--mode", "PYNATIVE",
                           "--resume", ckpt, "--model_size", "0.5x", "--group", "3", "--num_classes", "2",
                           "--train_dataset_path", train_dir, "--image_size", "32", "--batch_size", "4",
                           "--epoch_size", "1", "--warmup_epochs", "0", "--eval_interval", "0",
                           "--num_parallel_workers", "1",
                           "--save_ckpt_path", str(out_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"using pool_pad=symmetric recorded in {ckpt}" in done.stdout
    assert f"using input_format=bgr_255 recorded in {ckpt}" in done.stdout
    saved = load_config(str(out_dir / "config.yaml"))
    assert (saved.pool_pad, saved.input_format) == ("symmetric", "bgr_255")
    written = sorted(out_dir.glob("shufflenetv1-*.ckpt"))
    assert written, os.listdir(out_dir)
    recorded = read_recorded(read_checkpoint(str(written[-1])))
    assert (recorded["pool_pad"], recorded["input_format"]) == ("symmetric", "bgr_255")
