"""Fast CPU batch normalisation (optionally fused with the following ReLU), a drop-in ``nn.BatchNorm2d``.

Why: after the convolutions, MindSpore 2.10's CPU BatchNorm and BatchNormGrad were
the largest cost of a ShuffleNetV1 training step (about 40%), and an eval-mode
BatchNorm, a per-channel affine map, took a third of inference. The native kernels
here read each tensor once or twice and fold the ReLU that follows in.

:class:`BatchNorm2d` subclasses ``nn.BatchNorm2d`` and keeps its parameters (``gamma``,
``beta``, ``moving_mean``, ``moving_variance``: names, shapes, initialisation) and its
function: batch statistics in training with the moving averages updated the same way
(momentum, unbiased variance), moving statistics in eval mode.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from .kernels import add_relu_op, bn_infer_op, bn_train_op

__all__ = ["BatchNorm2d", "batchnorm", "ConvBNSequence", "conv_bn_sequence"]


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d(num_features, eps, momentum)`` on native CPU kernels, followed by ReLU if ``relu``.

    Args:
        num_features (int): channels.
        relu (bool): apply ReLU to the output (fused; saves the ReLU pass and its gradient).
        eps (float): added to the variance.
        momentum (float): weight of the old moving statistics, as in ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features, relu=False, eps=1e-5, momentum=0.9):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.fused_relu = relu
        # eps and the weight of the batch statistic (nn.BatchNorm2d keeps 1 - momentum).
        self.hyper = ms.Tensor([eps, self.momentum], ms.float32)
        self.train_kernel = bn_train_op(relu)
        self.infer_kernel = bn_infer_op(relu)

    def construct(self, x):
        if self.training:
            y, batch_mean, batch_var, moving_mean, moving_variance = self.train_kernel(
                x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.hyper)
            ops.assign(self.moving_mean, moving_mean)
            ops.assign(self.moving_variance, moving_variance)
            # The batch statistics feed only the gradient; depending on them keeps graph
            # mode from warning, once per BN, that it dropped the unused outputs.
            return ops.depend(y, (batch_mean, batch_var))
        return self.infer_kernel(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.hyper)


def batchnorm(num_features, fast, relu=False):
    """Cells for BN (then ReLU if ``relu``): ``[BatchNorm2d(relu)]`` if ``fast``, else ``[nn.BatchNorm2d, nn.ReLU]``.

    Either way the BN is the first cell, so parameter names do not depend on the path.
    """
    if fast:
        return [BatchNorm2d(num_features, relu=relu)]
    return [nn.BatchNorm2d(num_features)] + ([nn.ReLU()] if relu else [])


class ConvBNSequence(nn.SequentialCell):
    """``nn.SequentialCell`` of (fast convolution, :class:`BatchNorm2d`) pairs.

    In training it runs its cells one after the other. In eval mode each pair runs as
    one kernel, the BN (on its moving statistics) folded into the convolution: the
    BN's separate pass over the tensor is gone. The cells, and so the parameter names,
    are those of the SequentialCell. :meth:`forward_add_relu` also takes over a
    residual join, ``relu(self(x) + residual)``.
    """

    def __init__(self, cells):
        super().__init__(cells)
        if len(cells) % 2 or not all(isinstance(bn, BatchNorm2d) and hasattr(conv, "fuse_bn")
                                     for conv, bn in zip(cells[::2], cells[1::2])):
            raise ValueError("ConvBNSequence needs (fast convolution, fast BatchNorm2d) pairs")
        for conv, bn in zip(cells[::2], cells[1::2]):
            conv.fuse_bn(bn.fused_relu)
        starts = tuple(range(0, len(cells), 2))
        self.pair_starts = starts
        self.head_starts = starts[:-1]
        self.last_start = starts[-1]
        # The last pair can absorb the join if its convolution has the kernel for it and
        # its BN has no ReLU of its own.
        self.join_fusable = hasattr(cells[-2], "forward_with_bn_add_relu") and not cells[-1].fused_relu
        self.add_relu = add_relu_op()

    def construct(self, x):
        if self.training:
            for cell in self.cell_list:
                x = cell(x)
            return x
        for i in self.pair_starts:
            bn = self.cell_list[i + 1]
            x = self.cell_list[i].forward_with_bn(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                                  bn.hyper)
        return x

    def forward_add_relu(self, x, residual):
        """``relu(self(x) + residual)``: one pass for the join in training, none of its own in eval mode."""
        if self.training or not self.join_fusable:
            return self.add_relu(residual, self.construct(x))
        for i in self.head_starts:
            bn = self.cell_list[i + 1]
            x = self.cell_list[i].forward_with_bn(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                                  bn.hyper)
        bn = self.cell_list[self.last_start + 1]
        return self.cell_list[self.last_start].forward_with_bn_add_relu(
            x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance, bn.hyper, residual)


def conv_bn_sequence(cells, fast):
    """``ConvBNSequence(cells)`` if ``fast``, else ``nn.SequentialCell(cells)``."""
    return ConvBNSequence(cells) if fast else nn.SequentialCell(cells)
