"""The network: variants, parameter counts, gradients, channel shuffle, golden output."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from helpers import fill_deterministic
from src.fast_ops import accelerate, fast_ops_available
from src.shufflenetv1 import STAGE_CHANNELS, ShuffleNetV1, channel_shuffle

# Published parameter counts (conv + BN + classifier with bias, 1000 classes).
PARAM_COUNTS = {
    (3, "0.5x"): 718_324, (3, "1.0x"): 1_865_728, (3, "1.5x"): 3_442_168, (3, "2.0x"): 5_450_776,
    (8, "0.5x"): 1_011_448, (8, "1.0x"): 2_434_768, (8, "1.5x"): 4_269_952, (8, "2.0x"): 6_522_232,
}
GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden_0.5x_g3.npz")


@pytest.mark.parametrize("group,model_size", sorted(PARAM_COUNTS))
def test_parameter_count_and_output_shape(group, model_size):
    net = ShuffleNetV1(model_size=model_size, group=group)
    assert sum(p.size for p in net.trainable_params()) == PARAM_COUNTS[(group, model_size)]
    net.set_train(False)
    out = net(Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32)))
    assert out.shape == (2, 1000)
    assert STAGE_CHANNELS[(group, model_size)][-1] == net.num_features


@pytest.mark.parametrize("group,model_size", sorted(PARAM_COUNTS))
def test_every_trainable_parameter_gets_a_gradient(group, model_size):
    ms.set_seed(1)
    net = ShuffleNetV1(model_size=model_size, group=group, num_classes=7)
    net.set_train(True)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    params = net.trainable_params()

    def forward(x, y):
        return loss_fn(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, params)
    rng = np.random.RandomState(0)
    x = Tensor(rng.rand(4, 3, 32, 32).astype(np.float32))
    y = Tensor(np.array([0, 1, 2, 3], np.int32))
    _, grads = grad_fn(x, y)
    assert len(grads) == len(params)
    dead = [p.name for p, g in zip(params, grads) if not np.any(g.asnumpy() != 0)]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("kwargs,message", [
    ({"model_size": "3.0x"}, "model_size='3.0x'"),
    ({"group": 4}, "group=4"),
    ({"num_classes": 0}, "num_classes=0"),
])
def test_bad_variant_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError) as info:
        ShuffleNetV1(**kwargs)
    assert message in str(info.value)
    if "model_size" in kwargs:
        assert "0.5x" in str(info.value) and "2.0x" in str(info.value)


@pytest.mark.parametrize("group", [3, 8])
def test_channel_shuffle_is_the_intended_permutation(group):
    channels = group * 5
    x = np.arange(channels, dtype=np.float32).reshape(1, channels, 1, 1)
    x = np.broadcast_to(x, (2, channels, 2, 3)).copy()
    out = channel_shuffle(Tensor(x), group).asnumpy()
    # (B, C/g, g, H, W) with axes 1 and 2 swapped: output channel b*(C/g)+a reads input a*g+b.
    per = channels // group
    expected = [a * group + b for b in range(group) for a in range(per)]
    assert out[0, :, 0, 0].tolist() == expected
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[1], out[0])
    assert sorted(expected) == list(range(channels))  # a permutation, nothing lost


def test_features_and_head_compose_to_the_network():
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=10))
    net.set_train(False)
    x = Tensor(np.random.RandomState(3).rand(2, 3, 64, 64).astype(np.float32))
    feats = net.forward_features(x)
    assert feats.shape == (2, 480, 2, 2)
    np.testing.assert_allclose(net.forward_head(feats).asnumpy(), net(x).asnumpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode,accelerated", [(ms.PYNATIVE_MODE, False), (ms.GRAPH_MODE, False),
                                               (ms.GRAPH_MODE, True)])
def test_golden_output(mode, accelerated):
    """Seeded weights and input -> stored logits, in both execution modes, plain and on the CPU kernels."""
    golden = np.load(GOLDEN)
    ms.set_context(mode=mode)
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=10), seed=0)
    if accelerated:
        if not fast_ops_available():
            pytest.skip("no C++ compiler: the fast kernels cannot be built here")
        accelerate(net)
    net.set_train(False)
    out = net(Tensor(golden["x"])).asnumpy()
    np.testing.assert_allclose(out, golden["logits"], rtol=1e-5, atol=1e-5)


def test_odd_input_sizes_work():
    net = ShuffleNetV1("0.5x", 8, num_classes=3)
    net.set_train(False)
    for size in (32, 45, 97):
        assert net(ops.ones((1, 3, size, size), ms.float32)).shape == (1, 3)
