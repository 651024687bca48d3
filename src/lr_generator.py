"""Learning-rate schedules, one value per training step.

Modes (``lr_decay_mode``):
    cosine       linear warm-up lr_init -> lr_max, then cosine decay to lr_end (default);
    linear       linear warm-up, then linear decay to lr_end (the authors' recipe);
    steps        lr_max, x0.1 at 30%, 60% and 80% of training (after warm-up);
    steps_decay  lr_max, x0.94 every 2 epochs (after warm-up).
"""
import math

import numpy as np

__all__ = ["get_lr", "LR_DECAY_MODES"]

LR_DECAY_MODES = ("cosine", "linear", "steps", "steps_decay")


def get_lr(lr_init, lr_end, lr_max, warmup_epochs, total_epochs, steps_per_epoch, lr_decay_mode="cosine"):
    """Learning rate of every step of training.

    Args:
        lr_init (float): learning rate at step 0 (start of warm-up).
        lr_end (float): learning rate at the end (cosine and linear).
        lr_max (float): peak learning rate, reached when warm-up ends.
        warmup_epochs (int|float): epochs of linear warm-up.
        total_epochs (int): epochs of training.
        steps_per_epoch (int): steps per epoch.
        lr_decay_mode (str): one of ``LR_DECAY_MODES``.

    Returns:
        np.ndarray of float32, shape (total_epochs * steps_per_epoch,).
    """
    if lr_decay_mode not in LR_DECAY_MODES:  # (the config's values are checked by src/model_utils/config.py)
        raise ValueError(f"lr_decay_mode={lr_decay_mode!r} is not supported; choose one of {list(LR_DECAY_MODES)}")
    total_steps = total_epochs * steps_per_epoch
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    decay_steps = total_steps - warmup_steps
    lrs = np.empty(total_steps, dtype=np.float64)
    for i in range(total_steps):
        if i < warmup_steps:
            lrs[i] = lr_init + (lr_max - lr_init) * (i + 1) / warmup_steps
            continue
        progress = (i - warmup_steps) / max(decay_steps, 1)  # in [0, 1)
        if lr_decay_mode == "cosine":
            lrs[i] = lr_end + (lr_max - lr_end) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif lr_decay_mode == "linear":
            lrs[i] = lr_max - (lr_max - lr_end) * progress
        elif lr_decay_mode == "steps":
            lrs[i] = lr_max * 0.1 ** sum(progress >= edge for edge in (0.3, 0.6, 0.8))
        else:  # steps_decay
            lrs[i] = lr_max * 0.94 ** ((i - warmup_steps) // (2 * steps_per_epoch))
    return lrs.astype(np.float32)
