"""Label-smoothing cross entropy for sparse labels."""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

__all__ = ["CrossEntropySmooth"]


class CrossEntropySmooth(nn.LossBase):
    """Softmax cross entropy against smoothed one-hot targets.

    The target of the true class is ``1 - smooth_factor``; every other class gets
    ``smooth_factor / (num_classes - 1)``.

    Args:
        num_classes (int): number of classes.
        smooth_factor (float): label smoothing in [0, 1).
        reduction (str): "mean", "sum" or "none".
    """

    def __init__(self, num_classes=1000, smooth_factor=0.0, reduction="mean"):
        super().__init__()
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"label_smooth_factor={smooth_factor!r} must be in [0, 1)")
        if num_classes < 2 and smooth_factor > 0:
            raise ValueError("label smoothing needs num_classes >= 2")
        self.num_classes = num_classes
        self.on_value = ms.Tensor(1.0 - smooth_factor, ms.float32)
        self.off_value = ms.Tensor(smooth_factor / max(num_classes - 1, 1), ms.float32)
        self.ce = nn.SoftmaxCrossEntropyWithLogits(reduction=reduction)

    def construct(self, logits, label):
        target = ops.one_hot(label, self.num_classes, self.on_value, self.off_value)
        return self.ce(logits, target)
