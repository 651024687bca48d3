"""Fast CPU layers for ShuffleNetV1: grouped 1x1, depthwise 3x3 and stem 3x3 convolutions, BN(+ReLU).

:mod:`src.fast_ops.conv` and :mod:`src.fast_ops.norm` hold the Cells (drop-in
subclasses of nn.Conv2d / nn.BatchNorm2d), :mod:`src.fast_ops.kernels` the custom ops,
:mod:`src.fast_ops.native` the build of the native kernels (``fast_ops.cc``);
``python -m src.fast_ops`` builds them ahead of time.
"""
from .conv import (DENSE3X3_MAX_IN_CHANNELS, DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, conv2d,
                   fast_ops_available, resolve_conv_impl)
from .native import FastOpsUnavailable, build_library, cache_dir
from .pool import GlobalAvgPool, Pool3x3s2
from .norm import BatchNorm2d, ConvBNSequence, batchnorm, conv_bn_sequence

__all__ = ["Pool3x3s2", "GlobalAvgPool", "BatchNorm2d", "batchnorm", "ConvBNSequence", "conv_bn_sequence", "PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3", "conv2d", "resolve_conv_impl",
           "fast_ops_available", "DENSE3X3_MAX_IN_CHANNELS", "FastOpsUnavailable", "build_library", "cache_dir"]
