"""``create_network(cfg)``: the ShuffleNetV1 a config describes, on the native CPU kernels where they apply;
``inference_function(net)``: that network as a compiled function, for single-image inference."""
import mindspore as ms

from .fast_ops import accelerate, resolve_conv_impl
from .shufflenetv1 import ShuffleNetV1

__all__ = ["create_network", "inference_function"]


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


def inference_function(net):
    """``net`` in eval mode as a compiled function ``f(images) -> logits`` (the same graph as ``net(images)``).

    Why: in graph mode, every call of a Cell sets its compile phase on all of its sub-Cells
    (MindSpore 2.10, ``Cell.compile_phase``): about 0.6 ms for ShuffleNetV1's 171-188 Cells
    on 2 cores, a tenth of a batch-1 inference of 1.0x g3. A function compiled with
    ``ms.jit`` is called without that walk. Batches of 32 do not notice it.
    """
    net.set_train(False)

    @ms.jit
    def infer(images):
        return net(images)
    return infer
