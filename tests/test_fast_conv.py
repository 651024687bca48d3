"""The native CPU layers (src/fast_ops) and the accelerate pass against the plain Cells: values, gradients,
shared parameters and names, float32 checks, fallback."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from src.fast_ops import conv as fast_conv
from src.fast_ops import kernels, native
from src.fast_ops import ConvBNSequence, ShuffleUnit, accelerate, is_accelerated
from src.fast_ops.conv import DenseConv3x3, DepthwiseConv2d, PointwiseConv2d, shuffle_permutation
from src.fast_ops.norm import BatchNorm2d
from src.fast_ops.pool import GlobalAvgPool, Pool3x3s2
from src.model_factory import create_network, inference_function
from src.model_utils.config import load_config
from src.shufflenetv1 import ShuffleNetV1, channel_shuffle
from src.shufflenetv1 import GlobalAvgPool as PlainGlobalAvgPool
from tests.helpers import fill_deterministic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}

pytestmark = pytest.mark.skipif(not fast_conv.fast_ops_available(),
                                reason="no C++ compiler: the fast kernels cannot be built here")


@pytest.fixture(params=sorted(MODES))
def mode(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


def assert_close(actual, expected, what, tol=1e-4):
    """|actual - expected| <= tol * max(1, max |expected|), elementwise."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol} * {scale:.3g}"


def _grads(cell, x, sens):
    grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
    dx, dparams = grad(cell, ms.ParameterTuple(cell.trainable_params()))(x, sens)
    return dx[0].asnumpy(), [g.asnumpy() for g in dparams]


def check_against_plain(fast, plain, x_shape, seed=0, prep=None):
    """Forward, input gradient and weight gradient of ``fast`` vs ``plain`` (which share their weight)."""
    assert fast.weight is plain.weight, "the fast Cell must hold the plain Cell's Parameter"
    rng = np.random.RandomState(seed)
    plain.weight.set_data(ms.Tensor(rng.standard_normal(plain.weight.shape).astype(np.float32) * 0.5))
    x = ms.Tensor(rng.standard_normal(x_shape).astype(np.float32))
    x_plain = prep(x) if prep is not None else x
    y_fast, y_plain = fast(x).asnumpy(), plain(x_plain).asnumpy()
    assert_close(y_fast, y_plain, "output")
    sens = ms.Tensor(rng.standard_normal(y_plain.shape).astype(np.float32))
    dx_fast, (dw_fast,) = _grads(fast, x, sens)
    if prep is None:
        dx_plain, (dw_plain,) = _grads(plain, x, sens)
    else:
        dx_plain, (dw_plain,) = _grads(_Composed(prep, plain), x, sens)
    assert_close(dx_fast, dx_plain, "input gradient")
    assert_close(dw_fast, dw_plain, "weight gradient")


class _Composed(nn.Cell):
    def __init__(self, prep, cell):
        super().__init__()
        self.prep = prep
        self.cell = cell

    def construct(self, x):
        return self.cell(self.prep(x))


class _Shuffle(nn.Cell):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def construct(self, x):
        return channel_shuffle(x, self.groups)


# ----------------------------------------------------------------------------- single Cells

# (planes of 1024 values or more: the backward goes channel by channel, else in memory order)
@pytest.mark.parametrize("stride,shape", [(1, (2, 6, 7, 9)), (2, (2, 6, 9, 8)), (2, (3, 4, 5, 5)),
                                          (1, (1, 3, 1, 4)), (2, (1, 3, 2, 1)), (1, (2, 3, 36, 30)),
                                          (2, (2, 3, 33, 35))])
def test_depthwise_matches_conv2d(mode, stride, shape):
    channels = shape[1]
    plain = nn.Conv2d(channels, channels, 3, stride=stride, pad_mode="pad", padding=1, group=channels,
                      has_bias=False)
    check_against_plain(DepthwiseConv2d(plain), plain, shape)


@pytest.mark.parametrize("stride,groups", [(1, 3), (2, 3), (1, 2)])
def test_depthwise_with_fused_shuffle_matches_shuffle_then_conv2d(mode, stride, groups):
    channels = 6
    plain = nn.Conv2d(channels, channels, 3, stride=stride, pad_mode="pad", padding=1, group=channels,
                      has_bias=False)
    check_against_plain(DepthwiseConv2d(plain, shuffle_groups=groups), plain, (2, channels, 7, 6),
                        prep=_Shuffle(groups))


@pytest.fixture(params=["onednn", "batchmatmul"])
def gemm(request, monkeypatch):
    """Both ways of the 1x1 kernels: oneDNN's sgemm (native) and MindSpore's BatchMatMul (its fallback)."""
    if request.param == "batchmatmul":
        monkeypatch.setattr(fast_conv, "gemm_available", lambda: False)
    else:
        assert kernels.gemm_available(), "oneDNN's sgemm not found in MindSpore's process"
    return request.param


# (batch 1: fewer GEMMs than 4 per thread, so each is cut into blocks of columns (28x28: 3 per group,
# 48x48: 8) or, for small planes, of rows (6x6: 2 blocks of 32 rows per group); tiny ones stay whole.
# 128 x 128 per group on 7x7 and 5x4 planes: the last 1 and 4 columns of each product computed
# outside oneDNN.)
@pytest.mark.parametrize("cin,cout,group,hw,batch", [(6, 9, 3, (5, 7), 3), (6, 9, 3, (11, 12), 3), (4, 5, 1, (3, 5), 3),
                                                     (16, 8, 8, (2, 3), 3), (48, 96, 3, (28, 28), 1),
                                                     (32, 48, 1, (48, 48), 1), (96, 192, 3, (6, 6), 1),
                                                     (6, 9, 3, (5, 5), 1), (128, 128, 1, (7, 7), 2),
                                                     (256, 256, 2, (5, 4), 3)])
def test_pointwise_matches_conv2d(mode, gemm, cin, cout, group, hw, batch):
    plain = nn.Conv2d(cin, cout, 1, pad_mode="pad", padding=0, group=group, has_bias=False)
    fast = PointwiseConv2d(plain)
    assert fast.use_gemm == (gemm == "onednn")
    check_against_plain(fast, plain, (batch, cin, *hw))


@pytest.mark.parametrize("stride,shape", [(2, (2, 3, 9, 11)), (1, (2, 2, 6, 5)), (2, (1, 3, 8, 8))])
def test_dense3x3_matches_conv2d(mode, gemm, stride, shape):
    plain = nn.Conv2d(shape[1], 5, 3, stride=stride, pad_mode="pad", padding=1, has_bias=False)
    check_against_plain(DenseConv3x3(plain), plain, shape)


class _PlainBN(nn.Cell):
    def __init__(self, channels, relu, **kwargs):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, **kwargs)
        self.relu = nn.ReLU() if relu else None

    def construct(self, x):
        y = self.bn(x)
        if self.relu is not None:
            y = self.relu(y)
        return y


# Small planes go through the kernels in memory order, planes of 1024 values or more channel by
# channel (and in blocks of 1024 values): both orders are checked.
@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (2, 5, 40, 33)])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_nn_batchnorm(mode, relu, train, shape):
    rng = np.random.RandomState(4)
    # Two plain BNs with equal values: the fast one takes over the first one's Parameters, whose
    # moving statistics a training step then updates independently of the second one's.
    source, plain = nn.BatchNorm2d(5, momentum=0.8, eps=1e-3), _PlainBN(5, relu, momentum=0.8, eps=1e-3)
    fast = BatchNorm2d(source, relu=relu)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert getattr(fast, name) is getattr(source, name)
        value = ms.Tensor(rng.uniform(0.5, 1.5, 5).astype(np.float32))
        getattr(source, name).set_data(value)
        getattr(plain.bn, name).set_data(value.copy())
    x = ms.Tensor((rng.standard_normal(shape) * 2 + 0.7).astype(np.float32))
    sens = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    fast.set_train(train)
    plain.set_train(train)
    assert_close(fast(x).asnumpy(), plain(x).asnumpy(), "output")
    for name in ("moving_mean", "moving_variance"):  # updated by a training step, kept in eval
        assert_close(getattr(fast, name).asnumpy(), getattr(plain.bn, name).asnumpy(), name)
    grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
    (dx_f,), dp_f = grad(fast, ms.ParameterTuple(fast.trainable_params()))(x, sens)
    (dx_p,), dp_p = grad(plain, ms.ParameterTuple(plain.trainable_params()))(x, sens)
    assert_close(dx_f.asnumpy(), dx_p.asnumpy(), "input gradient")
    for what, g_f, g_p in zip(("gamma", "beta"), dp_f, dp_p):
        assert_close(g_f.asnumpy(), g_p.asnumpy(), f"gradient of {what}")


class _SeparateConvBN(nn.Cell):
    """A ConvBNSequence's first pair in training on the separate kernels: the convolution's, then the BN's
    (with the join when a residual is given)."""

    def __init__(self, seq, join):
        super().__init__()
        self.conv, self.bn, self.join = seq.cell_list[0], seq.cell_list[1], join

    def construct(self, x, residual):
        if self.join:
            return self.bn.forward_add_relu(self.conv(x), residual)
        return self.bn(self.conv(x))


class _FusedConvBN(nn.Cell):
    def __init__(self, seq, join):
        super().__init__()
        self.seq, self.join = seq, join

    def construct(self, x, residual):
        if self.join:
            return self.seq.forward_add_relu(x, residual)
        return self.seq(x)


# The 1x1 and stem convolutions train with their BN as one kernel each way; the results must be the
# separate kernels', bit for bit. Batch 1 cuts the GEMMs into blocks (the BN's sums then in a pass of
# their own); 40x33 planes are summed channel by channel, 5x7 in memory order.
@pytest.mark.parametrize("conv,cin,cout,group,shape,relu,join", [
    ("1x1", 6, 9, 3, (3, 5, 7), False, False), ("1x1", 6, 9, 3, (3, 5, 7), True, False),
    ("1x1", 6, 9, 3, (3, 5, 7), False, True), ("1x1", 4, 6, 1, (2, 40, 33), False, True),
    ("1x1", 4, 6, 1, (2, 40, 33), True, False), ("1x1", 48, 96, 3, (1, 28, 28), False, True),
    ("1x1", 96, 192, 3, (1, 6, 6), True, False), ("3x3", 3, 8, 1, (2, 20, 17), True, False),
    ("3x3", 3, 8, 1, (1, 40, 40), False, False),
])
def test_conv_bn_training_kernel_is_the_separate_kernels_bit_for_bit(mode, conv, cin, cout, group, shape, relu, join):
    rng = np.random.RandomState(6)
    batch, h, w = shape
    if conv == "1x1":
        plain = nn.Conv2d(cin, cout, 1, pad_mode="pad", padding=0, group=group, has_bias=False)
        fast = PointwiseConv2d(plain)
    else:
        plain = nn.Conv2d(cin, cout, 3, stride=2, pad_mode="pad", padding=1, has_bias=False)
        fast = DenseConv3x3(plain)
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    plain.weight.set_data(ms.Tensor(rng.standard_normal(plain.weight.shape).astype(np.float32) * 0.5))
    bn = nn.BatchNorm2d(cout, momentum=0.8, eps=1e-3)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(bn, name).set_data(ms.Tensor(rng.uniform(0.5, 1.5, cout).astype(np.float32)))
    seq = ConvBNSequence([fast, BatchNorm2d(bn, relu=relu)])
    assert fast.bn_train is not None
    assert (fast.bn_train_add_relu is not None) == (conv == "1x1" and not relu)
    x = ms.Tensor(rng.standard_normal((batch, cin, *shape[1:])).astype(np.float32))
    residual = ms.Tensor(rng.standard_normal((batch, cout, h, w)).astype(np.float32))
    sens = ms.Tensor(rng.standard_normal((batch, cout, h, w)).astype(np.float32))
    start = {name: getattr(bn, name).asnumpy().copy() for name in ("moving_mean", "moving_variance")}
    results = []
    for cell in (_FusedConvBN(seq, join), _SeparateConvBN(seq, join)):
        cell.set_train(True)
        for name, value in start.items():
            getattr(bn, name).set_data(ms.Tensor(value))
        out = {"output": cell(x, residual).asnumpy()}
        out.update({name: getattr(bn, name).asnumpy().copy() for name in start})
        grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
        dinputs, dparams = grad(cell, ms.ParameterTuple(cell.trainable_params()))(x, residual, sens)
        out["input gradient"], out["residual gradient"] = dinputs[0].asnumpy(), dinputs[1].asnumpy()
        out.update({f"gradient of {p.name}": g.asnumpy() for p, g in zip(cell.trainable_params(), dparams)})
        results.append(out)
    fused, separate = results
    assert fused.keys() == separate.keys() and len(fused) == 8
    for name, value in fused.items():  # (a residual that is not joined has no gradient)
        assert np.abs(value).max() > 0 or (name == "residual gradient" and not join), name
    for name, expected in separate.items():
        np.testing.assert_array_equal(fused[name], expected, err_msg=name)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("padding", ["same", "symmetric"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (1, 2, 8, 9), (1, 1, 1, 2)])
def test_pool_matches_nn_pool(mode, kind, padding, shape):
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    plain = cls(3, 2, pad_mode="same") if padding == "same" else cls(3, 2, pad_mode="pad", padding=1)
    fast = Pool3x3s2(kind, padding)
    rng = np.random.RandomState(5)
    x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))  # no ties: max's gradient is unambiguous
    y = plain(x).asnumpy()
    assert_close(fast(x).asnumpy(), y, "output")
    sens = ms.Tensor(rng.standard_normal(y.shape).astype(np.float32))
    grad = ops.GradOperation(sens_param=True)
    assert_close(grad(fast)(x, sens).asnumpy(), grad(plain)(x, sens).asnumpy(), "input gradient")


@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_max_pool_gradient_breaks_ties_like_mindspore(padding):
    # Post-ReLU feature maps are full of equal zeros: the gradient goes to the window's first maximum.
    ms.set_context(mode=ms.GRAPH_MODE)
    plain = nn.MaxPool2d(3, 2, pad_mode="same") if padding == "same" else nn.MaxPool2d(3, 2, pad_mode="pad", padding=1)
    x = ms.Tensor(np.ones((1, 2, 7, 6), np.float32))
    np.testing.assert_array_equal(ops.GradOperation()(Pool3x3s2("max", padding))(x).asnumpy(),
                                  ops.GradOperation()(plain)(x).asnumpy())


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (3, 4, 1, 1)])
def test_global_avg_pool_matches_mean(mode, shape):
    rng = np.random.RandomState(6)
    x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    fast = GlobalAvgPool()
    assert_close(fast(x).asnumpy(), x.asnumpy().mean(axis=(2, 3)), "output")
    sens = rng.standard_normal(shape[:2]).astype(np.float32)
    dx = ops.GradOperation(sens_param=True)(fast)(x, ms.Tensor(sens)).asnumpy()
    expected = np.broadcast_to(sens[:, :, None, None] / (shape[2] * shape[3]), shape)
    assert_close(dx, expected, "input gradient")


def test_pool_rejects_unknown_kind_or_padding():
    with pytest.raises(ValueError, match="kind='min'"):
        Pool3x3s2("min", "same")
    with pytest.raises(ValueError, match="padding='valid'"):
        Pool3x3s2("max", "valid")


def test_conv_bn_sequence_needs_fast_conv_bn_pairs():
    conv = PointwiseConv2d(nn.Conv2d(4, 4, 1, pad_mode="pad", has_bias=False))
    with pytest.raises(ValueError, match="pairs"):
        ConvBNSequence([conv, nn.BatchNorm2d(4)])
    with pytest.raises(ValueError, match="pairs"):
        ConvBNSequence([conv, BatchNorm2d(nn.BatchNorm2d(4)), conv])


def test_shuffle_permutation_is_channel_shuffle():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        x = ms.Tensor(np.arange(2 * 12, dtype=np.float32).reshape(2, 12, 1, 1))
        for groups in (2, 3, 4):
            perm = shuffle_permutation(12, groups)
            np.testing.assert_array_equal(channel_shuffle(x, groups).asnumpy(), x.asnumpy()[:, perm])
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    with pytest.raises(ValueError, match="not divisible"):
        shuffle_permutation(10, 3)


def test_fast_conv_covers_exactly_the_convolutions_it_has_kernels_for():
    def conv(*args, **kwargs):
        kwargs.setdefault("pad_mode", "pad")
        kwargs.setdefault("has_bias", False)
        return nn.Conv2d(*args, **kwargs)
    assert type(fast_conv.fast_conv(conv(6, 9, 1, group=3))) is PointwiseConv2d
    assert type(fast_conv.fast_conv(conv(6, 6, 3, stride=2, padding=1, group=6))) is DepthwiseConv2d
    assert type(fast_conv.fast_conv(conv(3, 8, 3, stride=2, padding=1))) is DenseConv3x3
    for plain in [conv(6, 9, 1, has_bias=True), conv(32, 8, 3, padding=1), conv(6, 6, 3, stride=3, padding=1, group=6),
                  conv(6, 6, 3, pad_mode="same", group=6), conv(6, 9, 1, stride=2)]:
        assert fast_conv.fast_conv(plain) is None, plain
    assert fast_conv.fast_conv(conv(6, 9, 1, group=3), shuffle_groups=3) is None  # shuffle: depthwise only


def test_bad_kernel_input_is_an_error_not_garbage():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        op = kernels.depthwise_op(1)
        x = ms.Tensor(np.ones((1, 4, 5, 5), np.float32))
        weight = ms.Tensor(np.ones((4, 1, 3, 3), np.float32))
        not_a_permutation = ms.Tensor(np.array([0, 0, 1, 2], np.int32))
        with pytest.raises(Exception):
            op(x, weight, not_a_permutation).asnumpy()
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


# ----------------------------------------------------------------------------- the accelerate pass

def _net(accelerated, group=3, pool_pad="same", model_size="0.5x", seed=None):
    ms.set_seed(1)
    net = ShuffleNetV1(model_size, group=group, num_classes=10, pool_pad=pool_pad)
    if seed is not None:
        fill_deterministic(net, seed)
    return accelerate(net) if accelerated else net


@pytest.mark.parametrize("group", [3, 8])
def test_accelerate_keeps_parameter_objects_names_and_order(group):
    net = _net(False, group)
    before = [(p, p.name, p.shape) for p in net.get_parameters()]
    plain = net.features[1]
    assert accelerate(net) is net and is_accelerated(net)
    assert [(p, p.name, p.shape) for p in net.get_parameters()] == before
    assert "features.0.branch_main_1.0.weight" in [name for _, name, _ in before]
    unit = net.features[1]
    assert isinstance(unit, ShuffleUnit) and isinstance(unit.branch_main_2, ConvBNSequence)
    assert isinstance(unit.branch_main_2[0], DepthwiseConv2d) and unit.branch_main_2[0].weight is plain.branch_main_2[0].weight
    assert isinstance(unit.branch_main_1[1], BatchNorm2d) and unit.branch_main_1[1].fused_relu
    assert isinstance(net.first_conv[0], DenseConv3x3) and isinstance(net.maxpool, Pool3x3s2)
    assert isinstance(net.global_pool, GlobalAvgPool)
    assert unit.branch_main_2[0].where == "features.1.branch_main_2.0"  # named in dtype errors
    with pytest.raises(ValueError, match="already accelerated"):
        accelerate(net)
    # the plain network itself holds no fast cell and is not accelerated
    fresh = _net(False, group)
    assert not is_accelerated(fresh)
    assert all(type(cell) is nn.Conv2d for _, cell in fresh.cells_and_names() if isinstance(cell, nn.Conv2d))
    assert isinstance(fresh.global_pool, PlainGlobalAvgPool)


@pytest.mark.parametrize("train", [False, True])
def test_standalone_stride2_unit_matches_plain_block_on_negative_input(train):
    """accelerate() drops the ReLU of a stride-2 unit's pooled shortcut (its input is >= 0 in the network);
    a ShuffleUnit built on its own keeps it: the same function as the plain block for any input."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        plain = _net(False, 3, seed=2).features[4]  # stage 3's first unit: stride 2
        assert plain.stride == 2
        unit = ShuffleUnit(plain, "same")
        assert unit.proj_relu and unit.branch_main_2[-1].fused_relu
        channels = unit.branch_main_1[0].in_channels
        x = ms.Tensor(np.random.RandomState(3).standard_normal((2, channels, 6, 6)).astype(np.float32))
        for cell in (plain, unit):
            cell.set_train(train)
        expected, actual = plain(x).asnumpy(), unit(x).asnumpy()
        assert (expected == 0).any() and (x.asnumpy() < 0).any()
        assert_close(actual, expected, "output", tol=1e-4 if train else 1e-6)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_checkpoint_moves_between_paths(tmp_path):
    fast, plain = _net(True, seed=3), _net(False)
    ckpt = str(tmp_path / "fast.ckpt")
    ms.save_checkpoint(fast, ckpt)
    not_loaded, _ = ms.load_param_into_net(plain, ms.load_checkpoint(ckpt), strict_load=True)
    assert not not_loaded
    for p_fast, p_plain in zip(fast.get_parameters(), plain.get_parameters()):
        np.testing.assert_array_equal(p_fast.asnumpy(), p_plain.asnumpy(), err_msg=p_fast.name)


# Measured agreement, plain vs accelerated (max |difference| / max(1, max |plain|), outputs and
# every gradient): eval mode (BN on moving statistics: the convolutions alone) 0.7-2.7e-7;
# training mode (batch statistics) 3e-5 for group 3, since BN divides by the spread of few
# values and magnifies rounding differences (group 8 also flips a few ReLU / max-pool
# decisions between near-equal values: 2e-3, not a parity check). Tolerances sit a few
# times above what is measured. PyNative: the same kernels as graph mode (checked below),
# without a graph compile per network.
EVAL_TOL, TRAIN_TOL = 1e-6, 1e-4


@pytest.mark.parametrize("model_size,group,size,batch,train,pool_pad", [
    ("0.5x", 3, 40, 2, False, "same"), ("0.5x", 8, 33, 2, False, "symmetric"), ("1.0x", 8, 32, 2, False, "same"),
    ("2.0x", 3, 32, 2, False, "symmetric"), ("0.5x", 3, 48, 4, True, "same"), ("1.0x", 3, 48, 4, True, "symmetric"),
    ("1.0x", 3, 96, 1, False, "same"),  # batch 1: the 1x1 (+BN) kernels in blocks of columns (stem) and rows
])
def test_accelerated_network_matches_plain(model_size, group, size, batch, train, pool_pad):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    sens = ms.Tensor(rng.standard_normal((batch, 10)).astype(np.float32))
    results = {}
    try:
        for accelerated in (True, False):
            net = _net(accelerated, group, pool_pad, model_size, seed=5)
            net.set_train(train)
            grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
            dx, dparams = grad(net, ms.ParameterTuple(net.trainable_params()))(x, sens)
            results[accelerated] = {"logits": net(x).asnumpy(), "input": dx[0].asnumpy(),
                                    **{p.name: g.asnumpy() for p, g in zip(net.trainable_params(), dparams)}}
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    assert results[True].keys() == results[False].keys()
    tol = TRAIN_TOL if train else EVAL_TOL
    for name, expected in results[False].items():
        assert_close(results[True][name], expected, name if name in ("logits", "input") else f"gradient of {name}",
                     tol=tol)


def test_inference_function_is_the_network_in_eval_mode():
    # (the compiled function of batch-1 serving, src.model_factory.inference_function)
    net = _net(True, seed=3)
    net.set_train(True)
    x = ms.Tensor(np.random.RandomState(2).standard_normal((1, 3, 40, 40)).astype(np.float32))
    infer = inference_function(net)
    assert not net.training
    out = infer(x).asnumpy()
    assert out.shape == (1, 10)
    np.testing.assert_array_equal(out, net(x).asnumpy())
    np.testing.assert_array_equal(infer(x).asnumpy(), out)  # called again: the compiled graph


def test_network_train_step_pynative_matches_graph():
    x = ms.Tensor(np.random.RandomState(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    outputs = {}
    for mode_name in ("pynative", "graph"):
        ms.set_context(mode=MODES[mode_name])
        net = _net(True, seed=7)
        net.set_train(True)
        grad = ops.GradOperation(get_by_list=True)(net, ms.ParameterTuple(net.trainable_params()))
        outputs[mode_name] = [g.asnumpy() for g in grad(x)]
    ms.set_context(mode=ms.GRAPH_MODE)
    for g_py, g_graph in zip(outputs["pynative"], outputs["graph"]):
        assert_close(g_py, g_graph, "gradient, PyNative vs graph")


def test_float16_input_is_refused_naming_the_layer():
    ms.set_context(mode=ms.GRAPH_MODE)
    net = _net(True)
    net.set_train(False)
    with pytest.raises(TypeError, match=r"first_conv: the fast CPU kernels compute in float32 only, .*Float16"):
        net(ms.Tensor(np.zeros((1, 3, 32, 32), np.float16)))
    unit = net.features[2]  # a layer deep inside, reached by a cast of its own (as mixed precision does)
    with pytest.raises(TypeError, match=r"features\.2: .*Float16"):
        unit(ms.Tensor(np.zeros((1, 120, 4, 4), np.float16)))


# ----------------------------------------------------------------------------- choice of path

def test_auto_is_fast_on_cpu_and_plain_elsewhere(monkeypatch):
    assert fast_conv.resolve_conv_impl("auto") == "fast"
    assert fast_conv.resolve_conv_impl("plain") == "plain"
    monkeypatch.setattr(fast_conv, "_device_target", lambda: "GPU")
    monkeypatch.setattr(native, "_state", {"path": native._state["path"], "error": None, "warned": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fast_conv.resolve_conv_impl("auto") == "plain"
        assert not caught
        assert fast_conv.resolve_conv_impl("fast") == "plain"
    assert len(caught) == 1 and "device_target CPU" in str(caught[0].message)
    with pytest.raises(ValueError, match="conv_impl='quick'"):
        fast_conv.resolve_conv_impl("quick")


def test_no_compiler_warns_once_and_uses_plain(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setenv("SHUFFLENET_MS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_state", {"path": None, "error": None, "warned": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nets = [create_network(load_config(None, {"model_size": "0.5x", "num_classes": "10", "conv_impl": impl}))
                for impl in ("auto", "fast")]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "no-such-g++" in messages[0] and "plain" in messages[0]
    for net in nets:
        assert not is_accelerated(net)
        convs = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.Conv2d)]
        assert convs and all(type(cell) is nn.Conv2d for cell in convs)
    with pytest.raises(native.FastOpsUnavailable, match="no-such-g"):
        accelerate(ShuffleNetV1("0.5x", 3, num_classes=10))
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")


def test_build_cache_is_keyed_and_concurrent_builds_are_safe(tmp_path):
    cache = tmp_path / "cache"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from src.fast_ops import native; "
            "print(native.build_library(directory=sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, ROOT, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    path = paths.pop()
    assert os.path.dirname(path) == str(cache) and os.path.basename(path).startswith("fast_ops-")
    assert os.listdir(cache) == [os.path.basename(path)], "temporary files left behind"
    mtime = os.path.getmtime(path)
    assert native.build_library(directory=str(cache)) == path
    assert os.path.getmtime(path) == mtime, "rebuilt although cached"


def test_aot_white_list_without_our_cache_falls_back_to_plain(monkeypatch, tmp_path):
    monkeypatch.setenv("MS_CUSTOM_AOT_WHITE_LIST", str(tmp_path))
    monkeypatch.setattr(native, "_state", {"path": None, "error": None, "warned": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fast_conv.resolve_conv_impl("auto") == "plain"
    assert len(caught) == 1 and "MS_CUSTOM_AOT_WHITE_LIST" in str(caught[0].message)


_FORK_SCRIPT = """
import ctypes, os, sys
import numpy as np
lib = ctypes.CDLL(sys.argv[1])

def add_relu(a, b):
    y = np.empty_like(a)
    shape = (ctypes.c_int64 * 1)(a.size)
    rc = lib.fast_add_relu(3, (ctypes.c_void_p * 3)(a.ctypes.data, b.ctypes.data, y.ctypes.data),
                           (ctypes.c_int * 3)(1, 1, 1), (ctypes.POINTER(ctypes.c_int64) * 3)(shape, shape, shape),
                           (ctypes.c_char_p * 3)(b"float32", b"float32", b"float32"), None, None)
    assert rc == 0, rc
    return y

a, b = np.random.randn(2, 1 << 20).astype(np.float32)
expected = np.maximum(a + b, 0)
assert np.array_equal(add_relu(a, b), expected)  # starts the worker threads
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(add_relu(a, b), expected) else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert np.array_equal(add_relu(a, b), expected)
print("ok")
"""


def test_kernels_work_in_a_forked_child():
    # Data-loading workers are forked from the training process after the kernels ran.
    result = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, native.library_path()], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# (graph-mode training on these kernels is quiet and updates the BN statistics: tests/test_train_eval.py)


_SPIN_SCRIPT = _FORK_SCRIPT.split("pid = os.fork()")[0] + """
import time
for i in range(300):  # kernels back to back (picked up while polling) and after pauses (after sleeping)
    assert np.array_equal(add_relu(a, b), expected), i
    if i % 50 == 0:
        time.sleep(0.01)
print("ok")
"""


@pytest.mark.parametrize("spin", ["300", "0", "not a number"])
def test_workers_that_poll_before_sleeping_compute_the_same(spin):
    # SHUFFLENET_FAST_OPS_SPIN_US: idle workers poll for the next kernel that long (batch-1 latency).
    env = dict(os.environ, SHUFFLENET_FAST_OPS_SPIN_US=spin)
    result = subprocess.run([sys.executable, "-c", _SPIN_SCRIPT, native.library_path()], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
