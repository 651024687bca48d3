"""Export a network for inference elsewhere: MINDIR, AIR (Ascend) or ONNX, always MindSpore's standard operators.

The network is the plain ShuffleNetV1 (never the CPU kernels of ``src/fast_ops``; the
weights are the same). MindSpore 2.10 cannot export pooling with explicit padding to ONNX,
so a ``pool_pad="symmetric"`` network gets an equivalent pooling first
(:func:`use_exportable_pooling`).
"""
import os

import numpy as np
import mindspore as ms
import mindspore.nn as nn
import mindspore.onnx as mindspore_onnx
import mindspore.ops as ops

from .checkpoint_utils import adopt_checkpoint_config, load_pretrained
from .model_factory import create_network
from .model_utils.config import EXPORT_EXTENSIONS as EXTENSIONS
from .model_utils.files import replace_when_done
from .shufflenetv1 import ShuffleV1Block

__all__ = ["EXTENSIONS", "export_path", "build_export_network", "use_exportable_pooling", "export_network"]

def export_path(file_name, file_format):
    """The file ``export_network`` writes: ``file_name`` plus the format's extension, unless it has it already."""
    extension = EXTENSIONS[file_format]
    return file_name if file_name.lower().endswith(extension) else file_name + extension


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
    """Give a ``pool_pad="symmetric"`` network pooling cells every exporter handles; returns ``net``.

    MindSpore 2.10 runs ``MaxPool2d``/``AvgPool2d`` with ``pad_mode="pad"`` as
    MaxPool3DWithArgmax/AvgPool3D, which its ONNX exporter rejects ("Exporting
    MaxPool3DWithArgmax operator is not yet supported"). The same function as explicit
    zero padding + unpadded pooling exports everywhere. Pooling has no parameters, so the
    weights are untouched; ``pool_pad="same"`` networks are returned as they are.
    """
    if net.pool_pad != "symmetric":
        return net
    net.maxpool = _ZeroPadPool("max")
    for block in net.features:
        if isinstance(block, ShuffleV1Block) and block.stride == 2:
            block.branch_proj = _ZeroPadPool("avg")
    return net


def build_export_network(cfg):
    """The plain network of ``cfg`` with the weights of ``cfg.ckpt_path``, in eval mode, ready to export.

    What the checkpoint records or its shapes imply (variant, ``pool_pad``, ``input_format``) is
    adopted into ``cfg`` first, since the weights only compute their function with them.

    Raises:
        CheckpointError: missing, unreadable or mismatched checkpoint.
    """
    adopt_checkpoint_config(cfg, cfg.ckpt_path, "export")
    net = create_network(cfg, conv_impl="plain")
    load_pretrained(net, cfg.ckpt_path)
    net.set_train(False)
    return use_exportable_pooling(net)


def export_network(net, file_name, file_format, batch_size, image_size):
    """Export ``net`` for input (batch_size, 3, image_size, image_size) float32; returns the file path.

    The file is written under a temporary name and renamed when complete, so a failed
    export leaves an earlier file of the same name intact.
    """
    path = export_path(file_name, file_format)
    extension = EXTENSIONS[file_format]
    temp_name = f"{path[:-len(extension)]}.partial-{os.getpid()}"
    temp_path = temp_name + extension
    example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    with replace_when_done(path, temp_path):
        if file_format == "ONNX":  # ms.export(file_format="ONNX") is deprecated in MindSpore 2.10
            mindspore_onnx.export(net, example, file_name=temp_path)
        else:  # (ms.export appends the extension itself)
            ms.export(net, example, file_name=temp_name, file_format=file_format)
    return path
