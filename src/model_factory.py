"""``create_network(cfg)``: the ShuffleNetV1 a config describes, on the native CPU kernels where they apply."""
from .fast_ops import accelerate, resolve_conv_impl
from .shufflenetv1 import ShuffleNetV1

__all__ = ["create_network"]


def create_network(cfg, conv_impl=None):
    """Build ``ShuffleNetV1(cfg.model_size, cfg.group, cfg.num_classes, cfg.pool_pad)``.

    Where ``conv_impl`` (default ``cfg.conv_impl``) resolves to "fast" (CPU, kernels
    built), :func:`src.fast_ops.accelerate` swaps in the native kernels; "plain" keeps
    MindSpore's own layers (export uses that).
    """
    net = ShuffleNetV1(model_size=cfg.model_size, group=cfg.group, num_classes=cfg.num_classes,
                       pool_pad=cfg.pool_pad)
    if resolve_conv_impl(conv_impl or cfg.conv_impl) == "fast":
        accelerate(net)
    return net
