"""Fast CPU layers for ShuffleNetV1 (``conv_impl="fast"``, or "auto" on CPU).

Why: on CPU, MindSpore 2.10 runs grouped 1x1, depthwise 3x3 and few-channel 3x3
convolutions through oneDNN's reference kernel (20-100x slower than PyTorch), and its
BatchNorm, pooling and element-wise kernels dominate once the convolutions are fixed.

* :mod:`.conv`: ``PointwiseConv2d``, ``DepthwiseConv2d``, ``DenseConv3x3``, drop-in
  subclasses of ``nn.Conv2d``; ``resolve_conv_impl`` picks the path;
* :mod:`.norm`: ``BatchNorm2d`` (+ fused ReLU), a drop-in ``nn.BatchNorm2d``, and
  ``ConvBNSequence``, which folds each BN into its convolution in eval mode;
* :mod:`.pool`: 3x3 stride-2 max/avg pooling and global average pooling;
* :mod:`.kernels`: the native kernels as MindSpore AOT custom ops, with gradients;
* :mod:`.native`: the cached, portable build of ``fast_ops.cc``
  (``python -m src.fast_ops`` builds it ahead of time).

Parameters (names, shapes, initialisation) are those of the plain Cells, so
checkpoints move freely between the two paths and devices.
"""
from .conv import (DENSE3X3_MAX_IN_CHANNELS, DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, conv2d,
                   fast_ops_available, resolve_conv_impl)
from .native import FastOpsUnavailable, build_library, cache_dir
from .norm import BatchNorm2d, ConvBNSequence, batchnorm, conv_bn_sequence
from .pool import GlobalAvgPool, Pool3x3s2

__all__ = ["PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3", "conv2d", "resolve_conv_impl",
           "fast_ops_available", "DENSE3X3_MAX_IN_CHANNELS", "BatchNorm2d", "batchnorm", "ConvBNSequence",
           "conv_bn_sequence", "Pool3x3s2", "GlobalAvgPool", "FastOpsUnavailable", "build_library", "cache_dir"]
