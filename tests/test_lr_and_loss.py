"""LR schedules against hand-computed values; the smoothed loss against numpy; top-k metric."""
import math

import mindspore as ms
import numpy as np
import pytest

from src.crossentropysmooth import CrossEntropySmooth
from src.lr_generator import get_lr
from src.metrics import TopKAccuracy


def test_cosine_with_warmup():
    lr = get_lr(lr_init=0.0, lr_end=0.0, lr_max=0.4, warmup_epochs=1, total_epochs=3, steps_per_epoch=2,
                lr_decay_mode="cosine")
    # warm-up steps: 0.2, 0.4; then cosine over 4 steps at progress 0, 1/4, 2/4, 3/4
    expected = [0.2, 0.4] + [0.2 * (1 + math.cos(math.pi * p)) for p in (0, 0.25, 0.5, 0.75)]
    np.testing.assert_allclose(lr, expected, rtol=1e-6)
    assert lr.dtype == np.float32 and len(lr) == 6


def test_linear():
    lr = get_lr(0.1, 0.0, 0.5, 1, 3, 2, "linear")
    np.testing.assert_allclose(lr, [0.3, 0.5, 0.5, 0.375, 0.25, 0.125], rtol=1e-6)


def test_steps():
    lr = get_lr(0.0, 0.0, 1.0, 0, 10, 1, "steps")
    np.testing.assert_allclose(lr, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)


def test_steps_decay():
    lr = get_lr(0.0, 0.0, 1.0, 0, 6, 2, "steps_decay")
    np.testing.assert_allclose(lr, [1, 1, 1, 1, 0.94, 0.94, 0.94, 0.94, 0.8836, 0.8836, 0.8836, 0.8836], rtol=1e-5)


def test_unknown_schedule():
    # (warm-up longer than the run and other values of the config: tests/test_config.py)
    with pytest.raises(ValueError, match="lr_decay_mode='exp' is not supported"):
        get_lr(0.0, 0.0, 0.1, 1, 3, 2, "exp")


def test_label_smoothing_loss_matches_numpy():
    rng = np.random.RandomState(0)
    logits = rng.randn(4, 5).astype(np.float32)
    labels = np.array([0, 3, 4, 1], np.int32)
    s = 0.1
    target = np.full((4, 5), s / 4)
    target[np.arange(4), labels] = 1 - s
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(target * log_softmax).sum(1).mean()
    got = CrossEntropySmooth(num_classes=5, smooth_factor=s)(ms.Tensor(logits), ms.Tensor(labels))
    np.testing.assert_allclose(float(got.asnumpy()), expected, rtol=1e-5)


def test_bad_smoothing():
    with pytest.raises(ValueError, match="label_smooth_factor=1.5"):
        CrossEntropySmooth(num_classes=5, smooth_factor=1.5)


def test_topk_accuracy_with_fewer_classes_than_k():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]], np.float32)
    labels = np.array([1, 2, 0], np.int32)
    top1, top5 = TopKAccuracy(1), TopKAccuracy(5)
    for metric in (top1, top5):
        metric.update(ms.Tensor(logits), ms.Tensor(labels))
    assert top1.eval() == pytest.approx(1 / 3)
    assert top5.eval() == 1.0  # k clipped to the 3 classes
    top2 = TopKAccuracy(2)
    top2.update(ms.Tensor(logits), ms.Tensor(labels))
    # sample 1: label 2 ties with class 1, which comes first (lower index) after class 0 -> third, not a hit
    assert top2.eval() == pytest.approx(1 / 3)
