"""Small helpers shared by the tests."""
import numpy as np


def fill_deterministic(net, seed=0):
    """Give every parameter of ``net`` reproducible numpy values (independent of MindSpore's RNG).

    Moving variances are kept positive so eval-mode BN is well defined.
    """
    rng = np.random.RandomState(seed)
    for name, param in sorted(net.parameters_and_names(), key=lambda item: item[0]):
        shape = param.shape
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.2, 0.6, size=shape)
        elif name.endswith(("beta", "moving_mean", "bias")):
            value = rng.normal(0.0, 0.1, size=shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)
        param.set_data(_tensor(value.astype(np.float32)))
    return net


def _tensor(array):
    import mindspore as ms
    return ms.Tensor(array)
