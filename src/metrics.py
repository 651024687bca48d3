"""Top-k accuracy that also works with fewer than k classes (transfer learning on 2-4 classes)."""
import numpy as np
from mindspore.train.metrics import Loss, Metric

__all__ = ["TopKAccuracy", "eval_metrics"]


class TopKAccuracy(Metric):
    """Fraction of samples whose label is among the ``k`` largest logits (k clipped to the class count)."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.clear()

    def clear(self):
        self._correct = 0
        self._total = 0

    def update(self, *inputs):
        if len(inputs) != 2:
            raise ValueError(f"TopKAccuracy needs (logits, labels), got {len(inputs)} inputs")
        logits = self._convert_data(inputs[0])
        labels = self._convert_data(inputs[1]).reshape(-1).astype(np.int64)
        k = min(self.k, logits.shape[-1])
        true_score = logits[np.arange(len(labels)), labels]
        # Ties count against the label, as a strict top-k would.
        rank = (logits > true_score[:, None]).sum(axis=-1)
        self._correct += int((rank < k).sum())
        self._total += len(labels)

    def eval(self):
        if self._total == 0:
            raise RuntimeError("TopKAccuracy: no samples were evaluated")
        return self._correct / self._total


def eval_metrics():
    """The metrics the entry points report, in the original's names."""
    return {"Loss": Loss(), "Top_1_Acc": TopKAccuracy(1), "Top_5_Acc": TopKAccuracy(5)}
