"""Small helpers shared by the tests."""
import os

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


def make_image_folder(root, per_class=(("ant", 2), ("bee", 3), ("cat", 2)), seed=0):
    """Write an ImageNet-style folder ``root/<class>/<class>_<i>.{jpg,png}`` of small random images.

    Sizes vary and JPEG alternates with PNG, so decoding and resizing are exercised.
    Returns ``[(img_id, label), ...]`` in class, then file order (labels: sorted class folders).
    """
    import os
    from PIL import Image
    rng = np.random.RandomState(seed)
    images = []
    for label, (name, count) in enumerate(sorted(per_class)):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            pixels = rng.randint(0, 256, (40 + 7 * i, 48 + 5 * label, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{name}_{i}.{'png' if i % 2 else 'jpg'}"))
            images.append((f"{name}_{i}", label))
    return images


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_entry(script, args, cwd, check=True, env=None, timeout=600, compile_cache=None):
    """Run ``python ROOT/script args`` in ``cwd``; returns the CompletedProcess (AssertionError if it fails
    and ``check``).

    ``compile_cache``: a name; runs of ``script`` given the same name reuse the graphs MindSpore
    compiled in the first of them (its compile cache), for tests that run the same network several
    times (resume). Give one name only to runs of the same variant, sizes and settings: MindSpore's
    cache numbers a process's graphs in compile order and checks only the source files, so it does
    not notice a changed variant or size by itself (a folder per script keeps scripts apart).
    """
    import os
    import subprocess
    import sys
    env = {**os.environ, **(env or {})}
    if compile_cache and os.environ.get("SHUFFLENET_TEST_COMPILE_CACHE"):
        env.update(MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=os.path.join(
            os.environ["SHUFFLENET_TEST_COMPILE_CACHE"], f"{script}-{compile_cache}"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_jsonl(path):
    """The records of a JSON-lines file (train_log.jsonl, train_steps.jsonl); [] when it does not exist."""
    import json
    import os
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip().endswith("}")]
