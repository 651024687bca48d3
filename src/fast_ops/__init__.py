"""Fast CPU convolutions for ShuffleNetV1 (grouped 1x1, depthwise 3x3, stem 3x3).

See :mod:`src.fast_ops.conv` for the Cells and :mod:`src.fast_ops.native` for the
build of the native kernels; ``python -m src.fast_ops`` builds them ahead of time.
"""
from .conv import (DENSE3X3_MAX_IN_CHANNELS, DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, conv2d,
                   fast_ops_available, resolve_conv_impl)
from .native import FastOpsUnavailable, build_library, cache_dir

__all__ = ["PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3", "conv2d", "resolve_conv_impl",
           "fast_ops_available", "DENSE3X3_MAX_IN_CHANNELS", "FastOpsUnavailable", "build_library", "cache_dir"]
