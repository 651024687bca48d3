"""Native CPU kernels for ShuffleNetV1, and ``accelerate(net)``, the pass that puts them in.

Why: on CPU, MindSpore 2.10 runs grouped 1x1, depthwise 3x3 and few-channel 3x3
convolutions through oneDNN's reference kernel (20-100x slower than PyTorch), and its
BatchNorm, pooling and element-wise kernels dominate once the convolutions are fixed.

The network (``src.shufflenetv1``) stays plain MindSpore; the entry points call
``accelerate(net)`` where ``resolve_conv_impl(cfg.conv_impl)`` is "fast" (CPU):

* :mod:`.accelerate`: the pass, and ``ShuffleUnit`` (a whole unit on native kernels);
* :mod:`.conv`: ``PointwiseConv2d``, ``DepthwiseConv2d``, ``DenseConv3x3``, each built from
  the ``nn.Conv2d`` it replaces; ``resolve_conv_impl`` picks the path;
* :mod:`.norm`: ``BatchNorm2d`` (+ fused ReLU) from an ``nn.BatchNorm2d``, and
  ``ConvBNSequence``, which folds each BN into its convolution in eval mode;
* :mod:`.pool`: 3x3 stride-2 max/avg pooling and global average pooling;
* :mod:`.kernels`: the native kernels as MindSpore AOT custom ops, with gradients
  (float32 only: another dtype is refused, naming the layer, when the graph is built);
* :mod:`.native`: the cached, portable build of ``fast_ops.cc``
  (``python -m src.fast_ops`` builds it ahead of time).

The replacements hold the Parameters of the layers they replace, so checkpoints move
freely between the accelerated and the plain network (export, GPU, Ascend).
"""
from .accelerate import ShuffleUnit, accelerate, is_accelerated
from .conv import (CONV_IMPLS, DENSE3X3_MAX_IN_CHANNELS, DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, fast_conv,
                   fast_ops_available, resolve_conv_impl)
from .native import FastOpsUnavailable, build_library, cache_dir
from .norm import BatchNorm2d, ConvBNSequence
from .pool import GlobalAvgPool, Pool3x3s2

__all__ = ["accelerate", "is_accelerated", "ShuffleUnit", "PointwiseConv2d", "DepthwiseConv2d", "DenseConv3x3",
           "fast_conv", "resolve_conv_impl", "fast_ops_available", "CONV_IMPLS", "DENSE3X3_MAX_IN_CHANNELS",
           "BatchNorm2d", "ConvBNSequence", "Pool3x3s2", "GlobalAvgPool", "FastOpsUnavailable", "build_library",
           "cache_dir"]
