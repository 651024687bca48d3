"""export.py: the exported MINDIR (loaded back with mindspore.load + nn.GraphCell) and ONNX
(onnxruntime) compute the logits of the eval-mode network, for both pooling paddings and a
batch other than 1; the graph is built from standard operators; errors are named."""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

import mindspore as ms
from mindspore import nn

import export
from helpers import fill_deterministic
from src.exporter import EXTENSIONS, build_export_network, export_network, use_exportable_pooling
from src.model_utils.config import load_config
from src.shufflenetv1 import ShuffleNetV1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4
SIZE = 40  # 40 -> 20 -> 10 -> 5 -> 3 -> 2: "same" pooling pads on both sides of odd sizes
BATCH = 3
VARIANT = ["--model_size", "0.5x", "--group", "3", "--num_classes", "10", "--image_size", str(SIZE)]


def save_net(path, pool_pad, seed, record_pool_pad=False):
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=10, pool_pad=pool_pad), seed)
    net.set_train(False)
    ms.save_checkpoint(net, str(path), append_dict={"pool_pad": pool_pad} if record_pool_pad else None)
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """For each pooling padding: (eval-mode Cell, MINDIR path, ONNX path), exported by export.main.

    The symmetric checkpoint records pool_pad (as converted Megvii weights do) and is exported
    without --pool_pad: export.py must adopt the recorded value.
    """
    out = tmp_path_factory.mktemp("export")
    result = {}
    for seed, pool_pad in enumerate(("same", "symmetric")):
        ckpt = out / f"{pool_pad}.ckpt"
        net = save_net(ckpt, pool_pad, seed, record_pool_pad=pool_pad == "symmetric")
        paths = []
        for file_format in ("MINDIR", "ONNX"):
            name = str(out / f"{pool_pad}_bs{BATCH}")
            assert export.main(["--ckpt_path", str(ckpt), "--device_target", "CPU", "--file_format", file_format,
                                "--batch_size", str(BATCH), "--file_name", name, *VARIANT]) == 0
            paths.append(name + EXTENSIONS[file_format])
        result[pool_pad] = (net, *paths)
    return result


def images(batch, seed=0):
    return np.random.RandomState(seed).normal(0.0, 1.0, (batch, 3, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("pool_pad", ["same", "symmetric"])
def test_mindir_and_onnx_give_the_cell_logits(exported, pool_pad):
    net, mindir, onnx_path = exported[pool_pad]
    x = images(BATCH)
    expected = net(ms.Tensor(x)).asnumpy()
    assert np.abs(expected).max() > 0.5, "logits too small for the tolerance to mean anything"
    graph = nn.GraphCell(ms.load(mindir))
    from_mindir = graph(ms.Tensor(x)).asnumpy()
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [BATCH, 3, SIZE, SIZE]
    from_onnx = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert from_mindir.shape == from_onnx.shape == (BATCH, 10)
    assert np.abs(from_mindir - expected).max() <= TOL
    assert np.abs(from_onnx - expected).max() <= TOL
    # Each image's logits depend on that image only (no mixing along the batch axis).
    single = net(ms.Tensor(x[1:2])).asnumpy()
    assert np.abs(from_onnx[1:2] - single).max() <= TOL


def test_pool_paddings_compute_different_functions(exported):
    """The parity above can tell the two paddings apart: same weights, different logits."""
    same_net, _, _ = exported["same"]
    symmetric = ShuffleNetV1("0.5x", 3, num_classes=10, pool_pad="symmetric")
    ms.load_param_into_net(symmetric, {p.name: p for p in same_net.get_parameters()})
    symmetric.set_train(False)
    x = ms.Tensor(images(2, seed=5))
    assert np.abs(symmetric(x).asnumpy() - same_net(x).asnumpy()).max() > 10 * TOL


def test_batch_one_mindir_for_the_310_program(tmp_path):
    net = save_net(tmp_path / "n.ckpt", "same", seed=3)
    name = str(tmp_path / "shufflenetv1_bs1")
    assert export.main(["--ckpt_path", str(tmp_path / "n.ckpt"), "--device_target", "CPU", "--file_format", "mindir",
                        "--batch_size", "1", "--file_name", name, *VARIANT]) == 0
    graph = nn.GraphCell(ms.load(name + ".mindir"))
    x = images(1, seed=7)
    out = graph(ms.Tensor(x)).asnumpy()
    assert out.shape == (1, 10)
    assert np.abs(out - net(ms.Tensor(x)).asnumpy()).max() <= TOL


@pytest.mark.parametrize("conv_impl", ["auto", "fast", "plain"])
def test_exported_network_uses_standard_operators(tmp_path, conv_impl):
    save_net(tmp_path / "n.ckpt", "symmetric", seed=1)
    cfg = load_config(None, {"ckpt_path": str(tmp_path / "n.ckpt"), "model_size": "0.5x", "num_classes": 10,
                             "pool_pad": "symmetric", "conv_impl": conv_impl})
    net = build_export_network(cfg)
    leaves = [(name, cell) for name, cell in net.cells_and_names() if not cell.name_cells()]
    # MindSpore's cells and the plain network's own (GlobalAvgPool: ops.mean), never a native kernel
    foreign = [(name, type(cell).__module__) for name, cell in leaves
               if not type(cell).__module__.startswith(("mindspore.", "src.shufflenetv1"))]
    assert leaves and not foreign, f"cells that are not MindSpore's own: {foreign[:3]}"
    assert not net.training


def test_symmetric_pooling_rewrite_keeps_the_function():
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=10, pool_pad="symmetric"), 2)
    net.set_train(False)
    x = ms.Tensor(images(2, seed=3))
    before = net(x).asnumpy()
    use_exportable_pooling(net)
    assert not isinstance(net.maxpool, nn.MaxPool2d)
    assert np.abs(net(x).asnumpy() - before).max() <= 1e-6


def _run_main(argv, capsys):
    try:
        code = export.main(argv)
    except SystemExit as exc:  # a bad config ends in get_config
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def test_air_without_ascend_is_refused(tmp_path, capsys):
    save_net(tmp_path / "n.ckpt", "same", seed=0)
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "n.ckpt"), "--device_target", "CPU", "--file_format",
                                "AIR", "--batch_size", "1", "--file_name", str(tmp_path / "x"), *VARIANT], capsys)
    assert code == 2
    assert "file_format=AIR needs an Ascend device" in captured.err and "MINDIR" in captured.err
    assert not list(tmp_path.glob("x*"))


def test_device_this_mindspore_lacks_is_one_error_line(tmp_path, capsys, monkeypatch):
    def refuse(target, device_id=None):  # what the CPU-only wheel raises for Ascend
        raise RuntimeError(f"Unsupported device target {target}. This process only supports one of the ['CPU'].")
    save_net(tmp_path / "n.ckpt", "same", seed=0)
    monkeypatch.setattr(ms, "set_device", refuse)
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "n.ckpt"), "--device_target", "Ascend", "--file_format",
                                "MINDIR", "--file_name", str(tmp_path / "x")], capsys)
    assert code == 2
    assert ("error: device_target=Ascend cannot be used with this MindSpore installation (Unsupported device target "
            "Ascend.") in captured.err
    assert "pass --device_target CPU (MINDIR and ONNX export run on CPU)" in captured.err


def test_unknown_format_names_the_allowed_ones(tmp_path, capsys):
    code, captured = _run_main(["--ckpt_path", "x.ckpt", "--device_target", "CPU", "--file_format", "TFLITE",
                                "--file_name", str(tmp_path / "x")], capsys)
    assert code == 2 and "file_format='TFLITE' is not supported" in captured.err
    assert "['MINDIR', 'AIR', 'ONNX']" in captured.err


def test_missing_and_mismatched_checkpoints(tmp_path, capsys):
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "none.ckpt"), "--device_target", "CPU",
                                "--file_name", str(tmp_path / "x"), *VARIANT], capsys)
    assert code == 2 and "none.ckpt" in captured.err and "is not a file" in captured.err
    save_net(tmp_path / "n.ckpt", "same", seed=0)
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "n.ckpt"), "--device_target", "CPU",
                                "--file_name", str(tmp_path / "x"), "--model_size", "1.0x"], capsys)
    assert code == 2 and "--model_size 1.0x contradicts" in captured.err
    assert "the checkpoint is 0.5x g3: stem 12, stage 2 120 channels, 10 classes" in captured.err
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint" * 100)
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "bad.ckpt"), "--device_target", "CPU",
                                "--file_name", str(tmp_path / "x")], capsys)
    assert code == 1 and "cannot be read: it is damaged" in captured.err
    assert not list(tmp_path.glob("x*"))


def test_any_variant_exports_with_only_the_checkpoint_and_the_file(tmp_path, capsys):
    # default_config.yaml says 2.0x g3, 1000 classes: the checkpoint's own variant is used
    net = fill_deterministic(ShuffleNetV1("0.5x", 8, num_classes=4), 1)
    ms.save_checkpoint(net, str(tmp_path / "g8.ckpt"))
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "g8.ckpt"), "--device_target", "CPU", "--file_format",
                                "onnx", "--batch_size", "1", "--image_size", "32", "--file_name",
                                str(tmp_path / "net.onnx")], capsys)
    assert code == 0, captured.err
    assert "ShuffleNetV1 0.5x g8, 4 classes" in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g8.ckpt", "net.onnx"]  # not net.onnx.onnx
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "g8.ckpt"), "--device_target", "CPU", "--file_format",
                                "MINDIR", "--file_name", str(tmp_path / "net.onnx")], capsys)
    assert code == 2 and "ends with .onnx, but file_format=MINDIR" in captured.err


def test_bad_batch_and_output_folder(tmp_path, capsys):
    code, captured = _run_main(["--ckpt_path", "x.ckpt", "--device_target", "CPU", "--batch_size", "0"], capsys)
    assert code == 2 and "batch_size=0 must be >= 1" in captured.err
    save_net(tmp_path / "n.ckpt", "same", seed=0)
    code, captured = _run_main(["--ckpt_path", str(tmp_path / "n.ckpt"), "--device_target", "CPU", "--file_name",
                                str(tmp_path / "no" / "such" / "net")], capsys)
    assert code == 2 and "does not exist" in captured.err


def test_failed_export_keeps_the_earlier_file(tmp_path):
    # Without use_exportable_pooling, MindSpore 2.10 cannot export symmetric pooling to ONNX
    # (MaxPool3DWithArgmax); when that changes, this test says the rewrite can go.
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=10, pool_pad="symmetric"), 0)
    net.set_train(False)
    earlier = tmp_path / "net.onnx"
    earlier.write_bytes(b"earlier export")
    with pytest.raises(RuntimeError, match="MaxPool3DWithArgmax"):
        export_network(net, str(tmp_path / "net"), "ONNX", batch_size=1, image_size=SIZE)
    assert earlier.read_bytes() == b"earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


@pytest.mark.slow
def test_cli_exports_onnx(tmp_path):
    save_net(tmp_path / "n.ckpt", "same", seed=0)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--ckpt_path", str(tmp_path / "n.ckpt"),
                           "--device_target", "CPU", "--file_format", "ONNX", "--batch_size", "2", "--file_name",
                           "net", *VARIANT], capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"exported {tmp_path / 'net.onnx'}: ONNX, input (batch 2, 3, {SIZE}, {SIZE})" in done.stdout
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, SIZE, SIZE]
