"""Top-k accuracy: one rule for eval.py, infer_onnx.py and postprocess.py (the Ascend 310 results).

The rule: a sample is a top-k hit when its label is among the first k classes of the
logits sorted from largest to smallest, equal logits in class order (the lower class
index first: the order of a stable sort, and of ``argmax``). So a label tied with
another class's logit counts as a hit only when that class comes after it. k is
clipped to the class count (transfer learning on 2-4 classes still reports Top-5).
"""
import numpy as np
from mindspore.train.metrics import Loss, Metric

__all__ = ["topk_correct", "topk_accuracy", "format_accuracy", "TopKAccuracy", "eval_metrics"]


def topk_correct(logits, labels, k):
    """Number of rows of ``logits`` (N, classes) whose label is a top-``k`` hit under the module's rule."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    k = min(k, logits.shape[-1])
    true_score = logits[np.arange(len(labels)), labels][:, None]
    classes = np.arange(logits.shape[-1])[None, :]
    # The label's place in the sorted order: larger logits, and equal ones of lower class index, come first.
    rank = (logits > true_score).sum(axis=-1) + ((logits == true_score) & (classes < labels[:, None])).sum(axis=-1)
    return int((rank < k).sum())


def topk_accuracy(logits, labels, k):
    """Share of rows whose label is a top-``k`` hit (see :func:`topk_correct`)."""
    return topk_correct(logits, labels, k) / len(logits)


def format_accuracy(top1, top5):
    """The original's line for Ascend 310 and ONNX results: ``Top_1_Acc=75.00%, Top_5_Acc=100.00%``."""
    return f"Top_1_Acc={top1 * 100:.2f}%, Top_5_Acc={top5 * 100:.2f}%"


class TopKAccuracy(Metric):
    """Fraction of samples that are top-``k`` hits under the module's rule (k clipped to the class count)."""

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
        labels = self._convert_data(inputs[1])
        self._correct += topk_correct(logits, labels, self.k)
        self._total += len(logits)

    def eval(self):
        if self._total == 0:
            raise RuntimeError("TopKAccuracy: no samples were evaluated")
        return self._correct / self._total


def eval_metrics():
    """The metrics the entry points report, in the original's names."""
    return {"Loss": Loss(), "Top_1_Acc": TopKAccuracy(1), "Top_5_Acc": TopKAccuracy(5)}
