"""Native CPU batch normalisation (optionally fused with the following ReLU), built from an ``nn.BatchNorm2d``.

Why: after the convolutions, MindSpore 2.10's CPU BatchNorm and BatchNormGrad were
the largest cost of a ShuffleNetV1 training step (about 40%), and an eval-mode
BatchNorm, a per-channel affine map, took a third of inference. The native kernels
here read each tensor once or twice and fold the ReLU that follows in.

:class:`BatchNorm2d` holds the Parameters of the ``nn.BatchNorm2d`` it replaces
(``gamma``, ``beta``, ``moving_mean``, ``moving_variance``: the same objects) and
computes its function: batch statistics in training with the moving averages updated
the same way (momentum, unbiased variance), moving statistics in eval mode.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from .kernels import add_relu_op, bn_infer_op, bn_train_add_relu_op, bn_train_op, require_float32

__all__ = ["BatchNorm2d", "ConvBNSequence"]


class BatchNorm2d(nn.Cell):
    """The function of ``bn`` (an ``nn.BatchNorm2d``), followed by ReLU if ``relu``, on native kernels.

    Args:
        bn (nn.BatchNorm2d): the layer replaced; its Parameters, ``eps`` and momentum are used.
        relu (bool): apply ReLU to the output (fused; saves the ReLU pass and its gradient).
    """

    def __init__(self, bn, relu=False):
        super().__init__()
        # (in nn.BatchNorm2d's order, so that the network lists its Parameters in the same order)
        self.moving_mean, self.moving_variance = bn.moving_mean, bn.moving_variance
        self.gamma, self.beta = bn.gamma, bn.beta
        self.fused_relu = relu
        self.where = "BatchNorm2d"
        # eps and the weight of the batch statistic (nn.BatchNorm2d keeps 1 - momentum).
        self.hyper = ms.Tensor([bn.eps, bn.momentum], ms.float32)
        self.train_kernel = bn_train_op(relu)
        self.infer_kernel = bn_infer_op(relu)
        self.train_join_kernel = None if relu else bn_train_add_relu_op()

    def updated(self, outputs):
        """The output of a training kernel, after updating the moving statistics.

        ``outputs``: the output first, then what only the gradient needs (batch statistics,
        ...), the new moving mean and variance last.
        """
        ops.assign(self.moving_mean, outputs[-2])
        ops.assign(self.moving_variance, outputs[-1])
        # Depending on the outputs the gradient needs keeps graph mode from warning, once
        # per BN, that it dropped unused outputs.
        return ops.depend(outputs[0], outputs[1:-2])

    def construct(self, x):
        require_float32(self.where, x, self.gamma)
        if self.training:
            return self.updated(self.train_kernel(x, self.gamma, self.beta, self.moving_mean,
                                                  self.moving_variance, self.hyper))
        return self.infer_kernel(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.hyper)

    def forward_add_relu(self, x, residual):
        """Training: ``relu(self(x) + residual)`` in one pass (a BN without a ReLU of its own)."""
        require_float32(self.where, x, self.gamma, residual)
        return self.updated(self.train_join_kernel(x, self.gamma, self.beta, self.moving_mean,
                                                   self.moving_variance, self.hyper, residual))


class ConvBNSequence(nn.SequentialCell):
    """``nn.SequentialCell`` of (fast convolution, :class:`BatchNorm2d`) pairs.

    In training each pair whose convolution has a training kernel with its BN (1x1 and stem
    convolutions) runs as one kernel forward and one backward, the others one cell after
    the other. In eval mode each pair runs as
    one kernel, the BN (on its moving statistics) folded into the convolution: the
    BN's separate pass over the tensor is gone. The cells sit at the indices of the
    plain SequentialCell they replace (conv 0, BN 1, ...), so parameter names are the
    same. :meth:`forward_add_relu` also takes over a residual join, ``relu(self(x) + residual)``.
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
        self.where = "ConvBNSequence"

    def _train_pair(self, i, x):
        """Training: the pair at ``i`` on ``x``, as one kernel each way where the convolution has one."""
        conv, bn = self.cell_list[i], self.cell_list[i + 1]
        if conv.bn_train is None:
            return bn(conv(x))
        return bn.updated(conv.train_with_bn(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance, bn.hyper))

    def construct(self, x):
        require_float32(self.where, x)
        if self.training:
            for i in self.pair_starts:
                x = self._train_pair(i, x)
            return x
        for i in self.pair_starts:
            bn = self.cell_list[i + 1]
            x = self.cell_list[i].forward_with_bn(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                                  bn.hyper)
        return x

    def forward_add_relu(self, x, residual):
        """``relu(self(x) + residual)``: in training, the join in the last BN's pass (and in the last
        convolution's kernel where it has one); in eval mode in the last convolution's kernel."""
        require_float32(self.where, x, residual)
        if self.training:
            conv, bn = self.cell_list[self.last_start], self.cell_list[self.last_start + 1]
            if bn.fused_relu:
                return self.add_relu(residual, self.construct(x))
            for i in self.head_starts:
                x = self._train_pair(i, x)
            if conv.bn_train_add_relu is None:
                return bn.forward_add_relu(conv(x), residual)
            return bn.updated(conv.train_with_bn_add_relu(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                                          bn.hyper, residual))
        if not self.join_fusable:
            return self.add_relu(residual, self.construct(x))
        for i in self.head_starts:
            bn = self.cell_list[i + 1]
            x = self.cell_list[i].forward_with_bn(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                                  bn.hyper)
        bn = self.cell_list[self.last_start + 1]
        return self.cell_list[self.last_start].forward_with_bn_add_relu(
            x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance, bn.hyper, residual)
