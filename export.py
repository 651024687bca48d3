"""Export a checkpoint for inference elsewhere:

    python export.py --ckpt_path CKPT --device_target CPU --file_format MINDIR --batch_size 1 \
        [--file_name NAME] [--model_size 2.0x --group 3 --num_classes 1000 --image_size 224]

Steps: config -> checks -> context -> network (standard operators) + checkpoint -> export to
``NAME.mindir`` / ``NAME.air`` / ``NAME.onnx``.

* MINDIR: MindSpore, MindSpore Lite and the Ascend 310 program in ``ascend310_infer/``
  (which feeds one image at a time: export it with ``--batch_size 1``).
* AIR: Ascend only (``--device_target Ascend`` on an Ascend machine).
* ONNX (opset 11): onnxruntime, e.g. ``infer_onnx.py``. The file has the fixed input shape
  (``--batch_size``, 3, ``--image_size``, ``--image_size``): MindSpore 2.10 can mark the input's
  batch axis dynamic, but the output keeps the traced batch and onnxruntime warns about it on
  every other batch size. ``infer_onnx.py`` pads a last partial batch.

The graph is always built from MindSpore's standard operators (``conv_impl="plain"``),
whatever CPU kernels training used; the weights are the same.
"""
import os
import sys

import numpy as np
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
import mindspore.onnx as mindspore_onnx

from src.checkpoint_utils import CheckpointError, adopt_network_options, load_pretrained
from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id, use_device
from src.model_factory import create_network

__all__ = ["FILE_FORMATS", "EXTENSIONS", "ExportError", "check_export_options", "build_export_network",
           "use_exportable_pooling", "export_network", "main"]

FILE_FORMATS = ("MINDIR", "AIR", "ONNX")
EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


class ExportError(ValueError):
    """Export options that cannot work; the message says what to change."""


def check_export_options(cfg):
    """Normalise and check the export keys of ``cfg`` before anything is built.

    Returns:
        the file format in upper case, one of ``FILE_FORMATS``.

    Raises:
        ExportError: unknown format, AIR without Ascend, a batch or image size that cannot
            work, or an output folder that does not exist.
    """
    file_format = cfg.file_format.upper()
    if file_format not in FILE_FORMATS:
        raise ExportError(f"file_format={cfg.file_format!r} is not supported; choose one of {list(FILE_FORMATS)}")
    if file_format == "AIR" and cfg.device_target != "Ascend":
        raise ExportError(f"file_format=AIR needs an Ascend device (--device_target Ascend on an Ascend machine), "
                          f"not device_target={cfg.device_target}; on this machine export MINDIR (MindSpore Lite, "
                          f"Ascend 310) or ONNX (onnxruntime)")
    if cfg.batch_size < 1:
        raise ExportError(f"batch_size={cfg.batch_size} must be >= 1 (1 for the Ascend 310 program)")
    if cfg.image_size < 32:
        raise ExportError(f"image_size={cfg.image_size} must be >= 32 (the network downsamples 32 times)")
    if not cfg.file_name:
        raise ExportError("file_name is empty; pass --file_name NAME (the extension is added)")
    folder = os.path.dirname(os.path.abspath(cfg.file_name))
    if not os.path.isdir(folder):
        raise ExportError(f"file_name={cfg.file_name!r}: the folder {folder!r} does not exist")
    return file_format


class _ZeroPadPool(nn.Cell):
    """Pad one row/column of zeros on every side, then a 3x3 stride-2 pool without padding.

    Equals the network's ``pool_pad="symmetric"`` pooling (``pad_mode="pad", padding=1``):
    the average counts the padding, as that pooling does, and the max pool follows a ReLU,
    so its inputs are >= 0 and a zero border never wins.
    """

    def __init__(self, kind):
        super().__init__()
        self.pad = ops.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        self.pool = pool(kernel_size=3, stride=2, pad_mode="valid")

    def construct(self, x):
        return self.pool(self.pad(x))


def use_exportable_pooling(net):
    """Give a ``pool_pad="symmetric"`` network pooling cells every exporter handles.

    MindSpore 2.10 runs ``MaxPool2d``/``AvgPool2d`` with ``pad_mode="pad"`` as
    MaxPool3DWithArgmax/AvgPool3D, which its ONNX exporter rejects ("Exporting
    MaxPool3DWithArgmax operator is not yet supported"). The same function as explicit
    zero padding + unpadded pooling exports everywhere. Pooling has no parameters, so the
    weights are untouched; ``pool_pad="same"`` networks are returned as they are.
    """
    if net.pool_pad != "symmetric":
        return net
    assert isinstance(net.maxpool, nn.MaxPool2d), "ShuffleNetV1.maxpool is expected to be a MaxPool2d"
    net.maxpool = _ZeroPadPool("max")
    for block in net.features:
        if block.stride == 2:
            assert isinstance(block.branch_proj, nn.AvgPool2d), "the stride-2 shortcut is expected to be an AvgPool2d"
            block.branch_proj = _ZeroPadPool("avg")
    return net


def build_export_network(cfg):
    """The network of ``cfg`` with the weights of ``cfg.ckpt_path``, in eval mode, ready to export.

    Options recorded in the checkpoint (``pool_pad``, ``input_format`` of converted Megvii
    weights) are adopted into ``cfg`` first, since the weights only compute their function
    with them.

    Raises:
        CheckpointError: missing, unreadable or mismatched checkpoint.
    """
    adopt_network_options(cfg, cfg.ckpt_path)
    net = create_network(cfg, conv_impl="plain")
    load_pretrained(net, cfg.ckpt_path)
    net.set_train(False)
    return use_exportable_pooling(net)


def export_network(net, file_name, file_format, batch_size, image_size):
    """Export ``net`` for input (batch_size, 3, image_size, image_size) float32; returns the file path.

    The file is written under a temporary name and renamed when complete, so a failed
    export leaves an earlier file of the same name intact.
    """
    path = file_name + EXTENSIONS[file_format]
    temp_name = f"{file_name}.partial-{os.getpid()}"
    temp_path = temp_name + EXTENSIONS[file_format]
    example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    try:
        if file_format == "ONNX":  # ms.export(file_format="ONNX") is deprecated in MindSpore 2.10
            mindspore_onnx.export(net, example, file_name=temp_path)
        else:
            ms.export(net, example, file_name=temp_name, file_format=file_format)
        os.replace(temp_path, path)
    finally:
        if os.path.exists(temp_path):
            os.remove(temp_path)
    return path


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv=None):
    # 1. Configuration and checks that need nothing built.
    cfg = get_config(argv)
    try:
        file_format = check_export_options(cfg)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    # 2. Context.
    try:
        use_device(cfg.device_target, get_device_id(cfg.device_id))
    except ValueError as exc:
        print(f"error: {exc} (MINDIR and ONNX export run on CPU)", file=sys.stderr, flush=True)
        return 2
    # 3. Network and weights.
    try:
        net = build_export_network(cfg)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    # 4. Export.
    try:
        path = export_network(net, cfg.file_name, file_format, cfg.batch_size, cfg.image_size)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: exporting {file_format} failed: {_first_line(exc)}", file=sys.stderr, flush=True)
        return 1
    print(f"exported {os.path.abspath(path)}: {file_format}, input (batch {cfg.batch_size}, 3, {cfg.image_size}, "
          f"{cfg.image_size}) float32, ShuffleNetV1 {cfg.model_size} g{cfg.group}, {cfg.num_classes} classes, "
          f"pool_pad={cfg.pool_pad}", flush=True)
    if cfg.input_format != "rgb_normalized":
        print(f"note: this network expects input_format={cfg.input_format} input; pass --input_format "
              f"{cfg.input_format} to infer_onnx.py and preprocess.py", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
