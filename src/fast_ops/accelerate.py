"""``accelerate(net)``: swap a plain ShuffleNetV1's layers, in place, for the native CPU kernels.

The network (``src.shufflenetv1``) is plain MindSpore. This pass replaces

* the stem ``first_conv`` (3x3 conv, BN, ReLU) with a :class:`ConvBNSequence` of
  :class:`DenseConv3x3` and a ReLU-fused :class:`BatchNorm2d`;
* ``maxpool`` and each unit's shortcut pooling with :class:`Pool3x3s2`;
* every ``ShuffleV1Block`` with a :class:`ShuffleUnit`: the same cells on native
  kernels, the channel shuffle read by the depthwise kernel, the residual join fused
  into the last BN in training and into the last 1x1 convolution in eval mode, the
  stride-2 join's ReLU into the last BN (and in eval mode each BN folded into its
  convolution);
* ``global_pool`` with the native :class:`GlobalAvgPool`.

Every replacement holds the Parameter objects of the layer it replaces, under the same
names, so the optimizer, checkpoints and ``load_pretrained`` work on either network,
and a checkpoint of an accelerated network loads into the plain one (export, GPU,
Ascend). Only the classifier (``nn.Dense``) stays as it is.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from ..shufflenetv1 import ShuffleNetV1, ShuffleV1Block
from . import native
from .conv import DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, fast_conv
from .kernels import require_float32
from .norm import BatchNorm2d, ConvBNSequence
from .pool import GlobalAvgPool, Pool3x3s2

__all__ = ["accelerate", "is_accelerated", "ShuffleUnit"]

_FAST_CELLS = (ConvBNSequence, Pool3x3s2, GlobalAvgPool, BatchNorm2d, PointwiseConv2d, DepthwiseConv2d, DenseConv3x3)


def _conv_bn(cells, shuffle_groups=1, relu_last=False):
    """A ConvBNSequence for a plain [conv, BN, (ReLU), conv, BN, ...] list; ValueError if it is not one.

    ``relu_last``: the last BN also applies a ReLU (one that follows the sequence in the plain network).
    """
    cells = list(cells)
    pairs = []
    i = 0
    while i < len(cells):
        conv, bn = cells[i], cells[i + 1] if i + 1 < len(cells) else None
        relu = (i + 2 < len(cells) and isinstance(cells[i + 2], nn.ReLU)) or (relu_last and i + 2 >= len(cells))
        if type(conv) is not nn.Conv2d or not isinstance(bn, nn.BatchNorm2d):
            raise ValueError(f"accelerate: expected Conv2d, BatchNorm2d at {i}, found {type(conv).__name__}, "
                             f"{type(bn).__name__}")
        fast = fast_conv(conv, shuffle_groups if not pairs else 1)
        if fast is None:
            raise ValueError(f"accelerate: no native kernel for {conv}")
        pairs += [fast, BatchNorm2d(bn, relu=relu)]
        i += 3 if relu else 2
    return ConvBNSequence(pairs)


class ShuffleUnit(nn.Cell):
    """A ``ShuffleV1Block`` on native kernels, holding that block's Parameters.

    The channel shuffle is read by the depthwise kernel (no copy of its own) and the
    stride-1 residual join runs inside the last 1x1 convolution's kernel in eval mode and
    inside the last BN's pass in training (its gradient too).

    A stride-2 unit computes ``relu(cat(avg_pool(x), main))``. Its ReLU goes into the main
    branch's last BN; with ``nonnegative_input`` (x is a ReLU's or a max pooling of a ReLU's
    output, as everywhere in ShuffleNetV1) the average pooling's output is >= 0 already, so
    that branch needs none: no ReLU pass and no ReLU gradient pass. (Its gradient then also
    reaches windows that are all zero, which are zeros of the ReLU before: masked there.)
    """

    def __init__(self, block, pool_pad, nonnegative_input=False):
        super().__init__()
        self.stride = block.stride
        self.where = "ShuffleUnit"
        self.branch_main_1 = _conv_bn(block.branch_main_1)
        self.branch_main_2 = _conv_bn(block.branch_main_2, shuffle_groups=block.group, relu_last=block.stride == 2)
        self.branch_proj = Pool3x3s2("avg", pool_pad) if block.stride == 2 else None
        self.proj_relu = not nonnegative_input
        self.relu = nn.ReLU()

    def construct(self, x):
        require_float32(self.where, x)
        main = self.branch_main_1(x)
        if self.stride == 1:
            return self.branch_main_2.forward_add_relu(main, x)
        proj = self.branch_proj(x)
        if self.proj_relu:
            proj = self.relu(proj)
        return ops.cat((proj, self.branch_main_2(main)), axis=1)


def accelerate(net):
    """Swap the layers of ``net`` (a :class:`ShuffleNetV1`) in place for native CPU kernels; returns ``net``.

    Call it on CPU (see :func:`src.fast_ops.resolve_conv_impl`); the Parameters and their
    names are unchanged, so do it before or after loading weights.

    Raises:
        FastOpsUnavailable: the native kernels cannot be built or loaded here.
        ValueError: ``net`` is not a plain ShuffleNetV1 (e.g. already accelerated).
    """
    if not isinstance(net, ShuffleNetV1):
        raise ValueError(f"accelerate needs a ShuffleNetV1, got {type(net).__name__}")
    if is_accelerated(net):
        raise ValueError("accelerate: the network is already accelerated")
    if native.library_path() is None:
        raise native.FastOpsUnavailable(native.build_error() or "the native kernels are unavailable")
    names = {id(param): param.name for param in net.get_parameters()}
    net.first_conv = _conv_bn(net.first_conv)
    net.maxpool = Pool3x3s2("max", net.pool_pad)
    for index, block in enumerate(net.features):
        if not isinstance(block, ShuffleV1Block):
            raise ValueError(f"accelerate: features.{index} is a {type(block).__name__}, not a ShuffleV1Block")
    # (every unit's input is the output of a ReLU or of the max pooling after the stem's ReLU)
    net.features = nn.SequentialCell([ShuffleUnit(block, net.pool_pad, nonnegative_input=True)
                                      for block in net.features])
    net.global_pool = GlobalAvgPool()
    # Assigning cells renames their Parameters by the new attribute path only; restore the full names.
    for param in net.get_parameters():
        param.name = names[id(param)]
    for name, cell in net.cells_and_names():
        if isinstance(cell, _FAST_CELLS + (ShuffleUnit,)):
            cell.where = name  # named in the float32 check's error
    return net


def is_accelerated(net):
    """Whether ``net`` runs on the native kernels (``accelerate`` was applied)."""
    return any(isinstance(cell, ShuffleUnit) for _, cell in net.cells_and_names())
