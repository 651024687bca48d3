"""Native CPU pooling: 3x3 stride-2 max and average pooling in ShuffleNetV1's two paddings, global average.

Why: MindSpore 2.10's CPU pooling kernels took a fifth of the fast path's inference
time; these native ones read each plane once. Same function as the ``nn.MaxPool2d`` /
``nn.AvgPool2d`` that ``src.shufflenetv1`` builds for ``pool_pad`` "same" (MindSpore's
pad_mode="same", averages over real pixels) and "symmetric" (padding 1, PyTorch-style),
and as ``src.shufflenetv1.GlobalAvgPool``.
"""
import mindspore.nn as nn

from .kernels import POOL_PADDINGS, global_avg_pool_op, pool_op, require_float32

__all__ = ["Pool3x3s2", "GlobalAvgPool"]


class Pool3x3s2(nn.Cell):
    """3x3, stride 2 ``kind`` ("max" or "avg") pooling with ``padding`` ("same" or "symmetric"), native kernels."""

    def __init__(self, kind, padding):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"kind={kind!r} is not supported; choose 'max' or 'avg'")
        if padding not in POOL_PADDINGS:
            raise ValueError(f"padding={padding!r} is not supported; choose one of {sorted(POOL_PADDINGS)}")
        self.kind = kind
        self.padding = padding
        self.where = f"Pool3x3s2({kind})"
        self.pool = pool_op(kind, padding)

    def construct(self, x):
        require_float32(self.where, x)
        return self.pool(x)


class GlobalAvgPool(nn.Cell):
    """(B, C, H, W) -> (B, C) mean over H and W, like ``ops.mean(x, axis=(2, 3))``, one native pass."""

    def __init__(self):
        super().__init__()
        self.where = "GlobalAvgPool"
        self.pool = global_avg_pool_op()

    def construct(self, x):
        require_float32(self.where, x)
        return self.pool(x)
