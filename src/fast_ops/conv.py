"""Native CPU versions of the convolutions of ShuffleNetV1, each built from the ``nn.Conv2d`` it replaces.

Why: on CPU, MindSpore 2.10 runs grouped 1x1, depthwise 3x3 and few-channel dense 3x3
convolutions through oneDNN's reference kernel, 20-100x slower than PyTorch (only
ungrouped 1x1 convolutions are fast). The Cells here compute the same functions:

* :class:`PointwiseConv2d`: 1x1 convolution, any group, one oneDNN sgemm per image
  and group in a native kernel (MindSpore's BatchMatMul where oneDNN is not found);
* :class:`DepthwiseConv2d`: 3x3 depthwise convolution (pad 1, stride 1 or 2), native
  forward and backward kernels, optionally reading its input through the channel shuffle;
* :class:`DenseConv3x3`: 3x3 convolution with few input channels (the stem), as a
  native im2col followed by the 1x1 kernel.

Each takes the ``nn.Conv2d`` it stands for and holds that Cell's ``weight`` Parameter
(the same object), so the optimizer, checkpoints and the plain network see one set of
parameters. Each also has ``forward_with_bn``, used by
:class:`~src.fast_ops.norm.ConvBNSequence` in eval mode, and the 1x1 and stem convolutions
``train_with_bn`` (``bn_train`` is None where there is none), used in training.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from . import native
from .kernels import (add_relu_op, bn_infer_op, depthwise_bn_op, depthwise_op, gemm_available, im2col_op,
                      pointwise_bn_add_relu_op, pointwise_bn_op, pointwise_bn_train_op, pointwise_op,
                      require_float32, shuffle_permutation)

__all__ = ["PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3", "fast_conv", "resolve_conv_impl",
           "fast_ops_available", "shuffle_permutation", "DENSE3X3_MAX_IN_CHANNELS", "CONV_IMPLS"]

# "plain": nn.Conv2d everywhere; "fast": the native CPU kernels; "auto": fast on CPU, plain elsewhere.
CONV_IMPLS = ("auto", "fast", "plain")
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
        raise ValueError(f"conv_impl={conv_impl!r} is not supported; choose one of {list(CONV_IMPLS)}")
    device = _device_target()
    if device != "CPU":
        if conv_impl == "fast":
            native.warn_once(f"conv_impl='fast' needs device_target CPU, but it is {device!r}")
        return "plain"
    return "fast" if native.library_path() is not None else "plain"


def _describe(conv):
    """(kernel size, stride, padding) of an nn.Conv2d whose sizes are equal along both axes, else None."""
    kernel, stride = conv.kernel_size, conv.stride
    if len(set(kernel)) != 1 or len(set(stride)) != 1 or tuple(conv.dilation) != (1, 1):
        return None
    padding = conv.padding if conv.pad_mode == "pad" else None
    if isinstance(padding, (tuple, list)):
        padding = padding[0] if len(set(padding)) == 1 else None
    return kernel[0], stride[0], padding


class _FastConv(nn.Cell):
    """Holds the Parameter of the nn.Conv2d it replaces; ``where`` names the layer in errors."""

    def __init__(self, conv):
        super().__init__()
        self.in_channels, self.out_channels, self.group = conv.in_channels, conv.out_channels, conv.group
        self.weight = conv.weight
        self.where = type(self).__name__
        # Training kernels of this convolution with the BN after it (set by fuse_bn where there are).
        self.bn_train = None
        self.bn_train_add_relu = None


class PointwiseConv2d(_FastConv):
    """The function of ``conv``, an ``nn.Conv2d`` 1x1, stride 1, no padding, no bias, any group.

    On CPU, MindSpore 2.10's grouped Conv2d falls to a reference kernel. This runs one
    oneDNN sgemm per image and group in a native kernel, or (where oneDNN's sgemm is
    not found) MindSpore's BatchMatMul.
    """

    def __init__(self, conv):
        super().__init__(conv)
        self.cin_g = self.in_channels // self.group
        self.cout_g = self.out_channels // self.group
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
        if self.use_gemm:
            self.bn_train = pointwise_bn_train_op(1 if relu else 0)
            self.bn_train_add_relu = None if relu else pointwise_bn_train_op(2)

    def train_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Training: this convolution then BN on the batch statistics (and ReLU), one kernel each way.

        Returns what :func:`~src.fast_ops.kernels.pointwise_bn_train_op` does (the output first,
        the new moving mean and variance last).
        """
        require_float32(self.where, x, self.weight, gamma)
        return self.bn_train(x, self.weight, gamma, beta, mean, var, hyper)

    def train_with_bn_add_relu(self, x, gamma, beta, mean, var, hyper, residual):
        """Training: relu(BN(this convolution(x)) + residual), one kernel each way (as :meth:`train_with_bn`)."""
        require_float32(self.where, x, self.weight, gamma, residual)
        return self.bn_train_add_relu(x, self.weight, gamma, beta, mean, var, hyper, residual)

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        require_float32(self.where, x, self.weight, gamma)
        if self.use_gemm:
            return self.bn_fused(x, self.weight, gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def forward_with_bn_add_relu(self, x, gamma, beta, mean, var, hyper, residual):
        """Inference: relu(BN(this convolution(x)) + residual), one kernel where possible."""
        require_float32(self.where, x, self.weight, gamma, residual)
        if self.bn_add_relu_fused is not None:
            return self.bn_add_relu_fused(x, self.weight, gamma, beta, mean, var, hyper, residual)
        return self.add_relu(residual, self.forward_with_bn(x, gamma, beta, mean, var, hyper))

    def construct(self, x):
        require_float32(self.where, x, self.weight)
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


class DepthwiseConv2d(_FastConv):
    """The function of ``conv``, an ``nn.Conv2d`` 3x3 depthwise (pad 1, stride 1 or 2, no bias),
    applied to ``channel_shuffle(x, shuffle_groups)``.

    With ``shuffle_groups`` > 1 the kernel reads its input through ShuffleNet's channel
    shuffle, which saves the shuffle's copy.
    """

    def __init__(self, conv, shuffle_groups=1):
        super().__init__(conv)
        self.conv_stride = _describe(conv)[1]
        self.shuffle_groups = shuffle_groups
        self.perm = ms.Tensor(shuffle_permutation(self.in_channels, shuffle_groups), ms.int32)
        self.depthwise = depthwise_op(self.conv_stride)

    def fuse_bn(self, relu):
        """Prepare :meth:`forward_with_bn` for a following BN (then ReLU if ``relu``)."""
        self.bn_fused = None if relu else depthwise_bn_op(self.conv_stride)
        self.bn_eval = bn_infer_op(relu)

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        require_float32(self.where, x, self.weight, gamma)
        if self.bn_fused is not None:
            return self.bn_fused(x, self.weight, self.perm, gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def construct(self, x):
        require_float32(self.where, x, self.weight)
        return self.depthwise(x, self.weight, self.perm)


class DenseConv3x3(_FastConv):
    """The function of ``conv``, an ``nn.Conv2d`` 3x3 (pad 1, stride 1 or 2, no bias, group 1) with
    few input channels (the RGB stem), as native im2col + the 1x1 kernel of :class:`PointwiseConv2d`."""

    def __init__(self, conv):
        super().__init__(conv)
        self.im2col = im2col_op(_describe(conv)[1])
        self.k = self.in_channels * 9
        self.use_gemm = gemm_available()
        self.gemm = pointwise_op("dense") if self.use_gemm else None
        self.bmm = ops.BatchMatMul()

    def fuse_bn(self, relu):
        """Prepare :meth:`forward_with_bn` for a following BN (then ReLU if ``relu``)."""
        self.bn_fused = pointwise_bn_op(relu) if self.use_gemm else None
        self.bn_eval = bn_infer_op(relu)
        if self.use_gemm:
            self.bn_train = pointwise_bn_train_op(1 if relu else 0, "dense")

    def train_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Training: this convolution then BN on the batch statistics (and ReLU), as
        :meth:`PointwiseConv2d.train_with_bn` (on the im2col columns)."""
        require_float32(self.where, x, self.weight, gamma)
        return self.bn_train(self.im2col(x), ops.reshape(self.weight, (self.out_channels, self.k, 1, 1)),
                             gamma, beta, mean, var, hyper)

    def forward_with_bn(self, x, gamma, beta, mean, var, hyper):
        """Inference: this convolution, then BN on moving statistics (and ReLU), fused where possible."""
        require_float32(self.where, x, self.weight, gamma)
        if self.use_gemm:
            return self.bn_fused(self.im2col(x), ops.reshape(self.weight, (self.out_channels, self.k, 1, 1)),
                                 gamma, beta, mean, var, hyper)
        return self.bn_eval(self.construct(x), gamma, beta, mean, var, hyper)

    def construct(self, x):
        require_float32(self.where, x, self.weight)
        cols = self.im2col(x)
        if self.use_gemm:
            return self.gemm(cols, ops.reshape(self.weight, (self.out_channels, self.k, 1, 1)))
        b, _, h, w = cols.shape
        weight = ops.broadcast_to(ops.reshape(self.weight, (1, self.out_channels, self.k)),
                                  (b, self.out_channels, self.k))
        out = self.bmm(weight, ops.reshape(cols, (b, self.k, h * w)))
        return ops.reshape(out, (b, self.out_channels, h, w))


def fast_conv(conv, shuffle_groups=1):
    """The native equivalent of ``conv`` (an ``nn.Conv2d``), sharing its weight; None when there is none.

    Covered: 1x1 convolutions (stride 1, no padding), 3x3 depthwise and 3x3 dense
    convolutions with few input channels (pad 1, stride 1 or 2), all without bias.
    ``shuffle_groups`` > 1 (depthwise only) puts a channel shuffle in front.
    """
    shape = _describe(conv)
    if shape is None or conv.has_bias:
        return None
    kernel, stride, padding = shape
    depthwise = conv.group == conv.in_channels == conv.out_channels
    if kernel == 3 and padding == 1 and stride in (1, 2) and depthwise:
        return DepthwiseConv2d(conv, shuffle_groups)
    if shuffle_groups != 1:
        return None
    if kernel == 1 and stride == 1 and padding == 0:
        return PointwiseConv2d(conv)
    if kernel == 3 and padding == 1 and stride in (1, 2) and conv.group == 1 \
            and conv.in_channels <= DENSE3X3_MAX_IN_CHANNELS:
        return DenseConv3x3(conv)
    return None
