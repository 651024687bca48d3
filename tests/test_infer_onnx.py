"""infer_onnx.py and scripts/run_onnx.sh: the accuracy of an exported ONNX file over an image
folder equals the accuracy of the eval-mode network on the same preprocessed images."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

import infer_onnx
from export import export_network
from helpers import fill_deterministic, make_image_folder
from postprocess import format_accuracy, topk_accuracy
from src.dataset import create_dataset
from src.shufflenetv1 import ShuffleNetV1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
CLASSES = (("ant", 3), ("bee", 2), ("cat", 3), ("dog", 3))  # 11 images: batches of 2 end with a partial one


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data folder, ONNX path with batch 2, eval-mode network, expected accuracy line)."""
    root = tmp_path_factory.mktemp("onnx")
    make_image_folder(str(root / "data"), per_class=CLASSES, seed=1)
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=6), seed=4)
    net.set_train(False)
    onnx_path = export_network(net, str(root / "net_bs2"), "ONNX", batch_size=2, image_size=SIZE)
    logits, labels = [], []
    data = create_dataset(str(root / "data"), do_train=False, batch_size=4, image_size=SIZE)
    for row in data.create_dict_iterator(output_numpy=True, num_epochs=1):
        logits.append(net(ms.Tensor(row["image"])).asnumpy())
        labels.append(row["label"].astype(np.int64))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    top1, top5 = topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5)
    assert len(labels) == 11 and 0 < top1 < 1 and top1 < top5, "the network must be partly right"
    return str(root / "data"), onnx_path, net, (top1, top5)


def test_fixed_batch_session_pads_the_last_batch(setup):
    _, onnx_path, net, _ = setup
    session = infer_onnx.open_session(onnx_path)
    assert infer_onnx.input_geometry(session)[1:] == (2, SIZE)
    x = np.random.RandomState(0).normal(0, 1, (5, 3, SIZE, SIZE)).astype(np.float32)
    out = infer_onnx.run_batches(session, x)
    assert out.shape == (5, 6)
    assert np.abs(out - net(ms.Tensor(x)).asnumpy()).max() <= 1e-4


def test_accuracy_equals_the_networks(setup):
    data, onnx_path, _, (top1, top5) = setup
    result = infer_onnx.evaluate_onnx(onnx_path, data)
    assert result["images"] == 11 and result["classes"] == 6
    assert result["Top_1_Acc"] == pytest.approx(top1) and result["Top_5_Acc"] == pytest.approx(top5)


def test_more_class_folders_than_outputs(setup, tmp_path):
    _, onnx_path, _, _ = setup
    make_image_folder(str(tmp_path / "data"), per_class=tuple((f"c{i}", 1) for i in range(7)))
    with pytest.raises(infer_onnx.OnnxInferenceError, match="7 class folders but the network has 6 outputs"):
        infer_onnx.evaluate_onnx(onnx_path, str(tmp_path / "data"))


def test_bad_onnx_files(tmp_path, setup, capsys):
    data = setup[0]
    assert infer_onnx.main(["--onnx_path", str(tmp_path / "none.onnx"), "--dataset_path", data]) == 2
    assert "none.onnx' is not a file" in capsys.readouterr().err
    assert infer_onnx.main(["--onnx_path", str(tmp_path / "none.onnx"), "--dataset_path", str(tmp_path / "x")]) == 2
    assert "dataset_path=" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"this is no onnx model")
    assert infer_onnx.main(["--onnx_path", str(tmp_path / "junk.onnx"), "--dataset_path", data]) == 1
    err = capsys.readouterr().err
    assert "junk.onnx' cannot be loaded by onnxruntime" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_onnx_script(setup, tmp_path):
    data, onnx_path, _, (top1, top5) = setup
    script = os.path.join(ROOT, "scripts", "run_onnx.sh")
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", script, onnx_path, data], capture_output=True, text=True, cwd=str(tmp_path),
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"batch 6/6: 11 images", done.stdout), done.stdout
    assert done.stdout.strip().splitlines()[-1] == format_accuracy(top1, top5)
    assert format_accuracy(top1, top5) in (tmp_path / "infer_onnx.log").read_text()

    usage = subprocess.run(["bash", script, onnx_path], capture_output=True, text=True, env=env, timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith("Usage: bash scripts/run_onnx.sh ONNX_PATH DATA_PATH")
    missing = subprocess.run(["bash", script, onnx_path, "no_such_dir"], capture_output=True, text=True,
                             cwd=str(tmp_path), env=env, timeout=60)
    assert missing.returncode == 2
    assert f"error: DATA_PATH={tmp_path / 'no_such_dir'} is not a directory" in missing.stderr
    failing = subprocess.run(["bash", script, onnx_path, data, "TPU"], capture_output=True, text=True, env=env,
                             timeout=60)
    assert failing.returncode == 2 and "DEVICE_TARGET=TPU is not supported" in failing.stderr
