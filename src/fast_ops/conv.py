"""Fast CPU implementations of the convolutions of ShuffleNetV1, as drop-in ``nn.Conv2d`` subclasses.

Why: on CPU, MindSpore 2.10 runs grouped 1x1, depthwise 3x3 and few-channel dense 3x3
convolutions through oneDNN's reference kernel, 20-100x slower than PyTorch (only
ungrouped 1x1 convolutions are fast). The classes here compute the same functions:

* :class:`PointwiseConv2d`: 1x1 convolution, any group, one oneDNN sgemm per image
  and group in a native kernel (MindSpore's BatchMatMul where oneDNN is not found);
* :class:`DepthwiseConv2d`: 3x3 depthwise convolution (pad 1, stride 1 or 2), native
  forward and backward kernels, optionally reading its input through the channel shuffle;
* :class:`DenseConv3x3`: 3x3 convolution with few input channels (the stem), as a
  native im2col followed by the 1x1 kernel.

Each class subclasses ``nn.Conv2d`` and only replaces ``construct``: the parameter is
the same ``weight`` of the same shape and initialisation, so checkpoints move freely
between this path and the plain one (GPU, Ascend, export). Each also has
``forward_with_bn``, used by :class:`~src.fast_ops.norm.ConvBNSequence` in eval mode.
The native kernels are CPU-only; :func:`resolve_conv_impl` picks the path.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import native
from .kernels import (add_relu_op, bn_infer_op, depthwise_bn_op, depthwise_op, gemm_available, im2col_op,
                      pointwise_bn_add_relu_op, pointwise_bn_op, pointwise_op, shuffle_permutation)

__all__ = ["PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3", "conv2d", "resolve_conv_impl",
           "fast_ops_available", "shuffle_permutation", "DENSE3X3_MAX_IN_CHANNELS"]

# Above this many input channels, the 9x larger im2col buffer costs more than it saves.
DENSE3X3_MAX_IN_CHANNELS = 16
# Below this many pixels, the grouped 1x1 matmul folds the batch into the matrix
# columns (two transposes, one large matmul per group) instead of running B * group
# small matmuls (measured on 2.0x: faster at 7x7, slower from 14x14 up).
_FOLD_BATCH_BELOW_HW = 100


def fast_ops_available():
    """Whether the native kernels are built and loadable (builds them on first call)."""
    return native.library_path(warn=False) is not None


def _device_target():
    return ms.get_context("device_target")


def resolve_conv_impl(conv_impl):
    """Map "auto" / "fast" / "plain" to the implementation actually used: "fast" or "plain".

    "auto" is "fast" when MindSpore's device is CPU and the native kernels build, else
    "plain". "fast" falls back to "plain" (with one warning) where the kernels cannot
    run: no C++ compiler, a failed build, or a device other than CPU.
    """
    if conv_impl == "plain":
        return "plain"
    if conv_impl not in ("auto", "fast"):
        raise ValueError(f"conv_impl={conv_impl!r} is not supported; choose one of ['auto', 'fast', 'plain']")
    device = _device_target()
    if device != "CPU":
        if conv_impl == "fast":
            native.warn_once(f"conv_impl='fast' needs device_target CPU, but it is {device!r}")
        return "plain"
    return "fast" if native.library_path() is not None else "plain"


class PointwiseConv2d(nn.Conv2d):
    """1x1 convolution (stride 1, no bias, any ``group``) as matrix products.

    Same arguments, parameter and function as ``nn.Conv2d(in_channels, out_channels, 1,
    pad_mode="pad", group=group, has_bias=False)``; on CPU, MindSpore 2.10's grouped
    Conv2d falls to a reference kernel. Runs one oneDNN sgemm per image and group in a
    native kernel, or (where oneDNN's sgemm is not found) MindSpore's BatchMatMul.
    """

    def __init__(self, in_channels, out_channels, group=1, weight_init=None):
        super().__init__(in_channels, out_channels, 1, stride=1, pad_mode="pad", padding=0, group=group,
                         has_bias=False, weight_init=weight_init)
        self.cin_g = in_channels // group
        self.cout_g = out_channels // group
        self.use_gemm = gemm_available()
        self.gemm = pointwise_op() if self.use_gemm else None
        # The BatchMatMul primitive, not ops.matmul: its gradient uses the transpose
        # flags of BatchMatMul, where ops.matmul's inserts Transpose copies.
        self.bmm = ops.BatchMatMul()

    def fuse_bn(self, relu):
        """Prepare :meth:`forward_with_bn` (and :meth:`forward_with_bn_add_relu`) for a following BN."""
        self.bn_fused = pointwise_bn_op(relu) if self.use_gemm else None
        self.bn_add_relu_fused = pointwise_bn_add_relu_op() if self.use_gemm and not relu else None
        self.bn_eval = bn_infer_op(relu)
        self.add_relu = add_relu_op()

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        if self.use_gemm:
            return self.bn_fused(x, self.weight, gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def forward_with_bn_add_relu(self, x, gamma, beta, mean, var, hyper, residual):
        """Inference: relu(BN(this convolution(x)) + residual), one kernel where possible."""
        if self.bn_add_relu_fused is not None:
            return self.bn_add_relu_fused(x, self.weight, gamma, beta, mean, var, hyper, residual)
        return self.add_relu(residual, self.forward_with_bn(x, gamma, beta, mean, var, hyper))

    def construct(self, x):
        if self.use_gemm:
            return self.gemm(x, self.weight)
        b, _, h, w = x.shape
        g = self.group
        hw = h * w
        weight = ops.reshape(self.weight, (g, self.cout_g, self.cin_g))
        if hw < _FOLD_BATCH_BELOW_HW and g > 1:
            cols = ops.transpose(ops.reshape(x, (b, g, self.cin_g, hw)), (1, 2, 0, 3))
            out = self.bmm(weight, ops.reshape(cols, (g, self.cin_g, b * hw)))
            out = ops.transpose(ops.reshape(out, (g, self.cout_g, b, hw)), (2, 0, 1, 3))
        else:
            weight = ops.broadcast_to(weight, (b, g, self.cout_g, self.cin_g))
            out = self.bmm(weight, ops.reshape(x, (b, g, self.cin_g, hw)))
        return ops.reshape(out, (b, self.out_channels, h, w))


class DepthwiseConv2d(nn.Conv2d):
    """3x3 depthwise convolution (pad 1, stride 1 or 2, no bias) on native CPU kernels.

    Same parameter and function as ``nn.Conv2d(channels, channels, 3, stride,
    pad_mode="pad", padding=1, group=channels, has_bias=False)`` applied to
    ``channel_shuffle(x, shuffle_groups)``: with ``shuffle_groups`` > 1 the kernel reads
    its input through ShuffleNet's channel shuffle, which saves the shuffle's copy.
    """

    def __init__(self, channels, stride=1, weight_init=None, shuffle_groups=1):
        if stride not in (1, 2):
            raise ValueError(f"stride={stride!r} is not supported by DepthwiseConv2d; choose 1 or 2")
        super().__init__(channels, channels, 3, stride=stride, pad_mode="pad", padding=1, group=channels,
                         has_bias=False, weight_init=weight_init)
        self.shuffle_groups = shuffle_groups
        self.conv_stride = stride
        self.perm = ms.Tensor(shuffle_permutation(channels, shuffle_groups), ms.int32)
        self.depthwise = depthwise_op(stride)

    def fuse_bn(self, relu):
        """Prepare :meth:`forward_with_bn` for a following BN (then ReLU if ``relu``)."""
        self.bn_fused = None if relu else depthwise_bn_op(self.conv_stride)
        self.bn_eval = bn_infer_op(relu)

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        if self.bn_fused is not None:
            return self.bn_fused(x, self.weight, self.perm, gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def construct(self, x):
        return self.depthwise(x, self.weight, self.perm)


class DenseConv3x3(nn.Conv2d):
    """3x3 convolution (pad 1, stride 1 or 2, no bias, group 1) as native im2col + one matmul.

    Same arguments, parameter and function as ``nn.Conv2d(in_channels, out_channels, 3,
    stride, pad_mode="pad", padding=1, has_bias=False)``; meant for few input channels
    (the RGB stem), where MindSpore 2.10 falls to a reference kernel on CPU. The matmul
    is the 1x1 kernel of :class:`PointwiseConv2d` applied to the columns.
    """

    def __init__(self, in_channels, out_channels, stride=1, weight_init=None):
        if stride not in (1, 2):
            raise ValueError(f"stride={stride!r} is not supported by DenseConv3x3; choose 1 or 2")
        super().__init__(in_channels, out_channels, 3, stride=stride, pad_mode="pad", padding=1,
                         has_bias=False, weight_init=weight_init)
        self.im2col = im2col_op(stride)
        self.k = in_channels * 9
        self.use_gemm = gemm_available()
        self.gemm = pointwise_op("dense") if self.use_gemm else None
        self.bmm = ops.BatchMatMul()

    def fuse_bn(self, relu):
        """Prepare :meth:`forward_with_bn` for a following BN (then ReLU if ``relu``)."""
        self.bn_fused = pointwise_bn_op(relu) if self.use_gemm else None
        self.bn_eval = bn_infer_op(relu)

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        if self.use_gemm:
            return self.bn_fused(self.im2col(x), ops.reshape(self.weight, (self.out_channels, self.k, 1, 1)),
                                 gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def construct(self, x):
        cols = self.im2col(x)
        if self.use_gemm:
            return self.gemm(cols, ops.reshape(self.weight, (self.out_channels, self.k, 1, 1)))
        b, _, h, w = cols.shape
        weight = ops.broadcast_to(ops.reshape(self.weight, (1, self.out_channels, self.k)),
                                  (b, self.out_channels, self.k))
        out = self.bmm(weight, ops.reshape(cols, (b, self.k, h * w)))
        return ops.reshape(out, (b, self.out_channels, h, w))


def conv2d(in_channels, out_channels, kernel_size, stride=1, pad_mode="same", padding=0, group=1,
           has_bias=False, weight_init=None, fast=True, shuffle_groups=1):
    """An ``nn.Conv2d`` with these arguments, or its fast equivalent when ``fast`` and one exists.

    The fast classes cover 1x1 convolutions (stride 1, no padding), 3x3 depthwise and
    3x3 dense convolutions with few input channels (pad 1, stride 1 or 2), all without
    bias; anything else is a plain ``nn.Conv2d``. ``shuffle_groups`` > 1 (fast depthwise
    only) puts a channel shuffle in front of the convolution.
    """
    depthwise = kernel_size == 3 and padding == 1 and stride in (1, 2) and group == in_channels == out_channels
    if shuffle_groups != 1 and not (fast and depthwise and not has_bias and pad_mode == "pad"):
        raise ValueError(f"shuffle_groups={shuffle_groups!r} needs a fast 3x3 depthwise convolution")
    if fast and not has_bias and pad_mode == "pad":
        if kernel_size == 1 and stride == 1 and padding == 0:
            return PointwiseConv2d(in_channels, out_channels, group=group, weight_init=weight_init)
        if kernel_size == 3 and padding == 1 and stride in (1, 2):
            if depthwise:
                return DepthwiseConv2d(in_channels, stride=stride, weight_init=weight_init,
                                       shuffle_groups=shuffle_groups)
            if group == 1 and in_channels <= DENSE3X3_MAX_IN_CHANNELS:
                return DenseConv3x3(in_channels, out_channels, stride=stride, weight_init=weight_init)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode=pad_mode, padding=padding,
                     group=group, has_bias=has_bias, weight_init=weight_init)
