"""CPU throughput of ShuffleNetV1: training step and inference, fast path vs plain path.

For one variant, batch and image size, times a full training step (forward, label-smoothed
cross entropy, backward, Momentum with weight decay: what train.py runs) and inference
(eval mode) on random data, once per convolution path:

* ``fast``: the CPU kernels of ``src/fast_ops`` (``conv_impl="fast"``);
* ``plain``: MindSpore's ``nn.Conv2d`` everywhere (``conv_impl="plain"``), slow on CPU;
* ``onnx``: inference only, ONNX Runtime on the exported plain-path network.

Prints one line per path, e.g. ``fast: train 12.3 img/s, infer 45.6 img/s``, then the
ratios. Compare with the PyTorch yardstick run in the same session on the same machine.

    python benchmark.py --model_size 2.0x --group 3 --batch_size 32 --image_size 224
    python benchmark.py --paths fast,onnx        # skip the slow plain path
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

PATHS = ("fast", "plain", "onnx")


def parse_args(argv):
    from src.shufflenetv1 import GROUPS, MODEL_SIZES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_size", default="2.0x", choices=MODEL_SIZES)
    parser.add_argument("--group", type=int, default=3, choices=GROUPS)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--paths", default="fast,plain,onnx",
                        help="comma-separated, from: " + ", ".join(PATHS) + " (default: all)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--plain_steps", type=int, default=2,
                        help="timed steps for the slow plain path (default 2)")
    parser.add_argument("--mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"))
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        parser.error(f"--paths {args.paths!r}: unknown path(s) {bad}; choose from {list(PATHS)}")
    for key in ("batch_size", "steps", "plain_steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1, got {getattr(args, key)}")
    if args.image_size < 32:
        parser.error(f"--image_size must be at least 32, got {args.image_size}")
    args.paths = paths
    return args


def _sync(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    out.asnumpy()


def _throughput(step, batch, steps):
    """(seconds of the first call, which includes graph compilation; images per second after a warm-up)."""
    start = time.perf_counter()
    _sync(step())
    first = time.perf_counter() - start
    _sync(step())
    start = time.perf_counter()
    for _ in range(steps):
        out = step()
    _sync(out)
    return first, batch * steps / (time.perf_counter() - start)


def bench_mindspore(args, conv_impl, steps):
    """Train and inference throughput of one convolution path; returns a dict."""
    import mindspore as ms
    import mindspore.nn as nn

    from src.crossentropysmooth import CrossEntropySmooth
    from src.shufflenetv1 import ShuffleNetV1

    ms.set_seed(0)
    net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes, conv_impl=conv_impl)
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)), ms.float32)
    labels = ms.Tensor(rng.randint(0, args.num_classes, (args.batch_size,)), ms.int32)

    loss = CrossEntropySmooth(num_classes=args.num_classes, smooth_factor=0.1)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9, weight_decay=4e-5)
    train_step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    train_step.set_train(True)
    compile_train, train = _throughput(lambda: train_step(images, labels), args.batch_size, steps)

    net.set_train(False)
    compile_infer, infer = _throughput(lambda: net(images), args.batch_size, steps)
    return {"used": net.conv_impl_used, "train": train, "infer": infer,
            "compile_train": compile_train, "compile_infer": compile_infer}


def bench_onnx(args, steps):
    """ONNX Runtime inference throughput of the exported plain-path network (img/s)."""
    import mindspore as ms
    import onnxruntime as ort

    from src.shufflenetv1 import ShuffleNetV1

    ms.set_seed(0)
    net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes, conv_impl="plain")
    net.set_train(False)
    images = np.random.RandomState(0).standard_normal(
        (args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        stem = os.path.join(tmp, "shufflenetv1")
        ms.export(net, ms.Tensor(images), file_name=stem, file_format="ONNX")
        session = ort.InferenceSession(stem + ".onnx", providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    run = lambda: session.run(None, {name: images})  # noqa: E731
    run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return args.batch_size * steps / (time.perf_counter() - start)


def main(argv=None):
    # 1. arguments and context
    args = parse_args(argv)
    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "GRAPH" else ms.PYNATIVE_MODE)
    print(f"ShuffleNetV1 {args.model_size} g{args.group}, batch {args.batch_size}, {args.image_size} px, "
          f"{args.mode} mode, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

    # 2. one measurement per path
    results = {}
    for path in args.paths:
        if path == "onnx":
            results[path] = {"infer": bench_onnx(args, args.steps)}
            print(f"onnx: infer {results[path]['infer']:.1f} img/s (onnxruntime, plain-path export)", flush=True)
            continue
        res = bench_mindspore(args, path, args.plain_steps if path == "plain" else args.steps)
        results[path] = res
        note = "" if res["used"] == path else f" (fell back to {res['used']})"
        print(f"{path}: train {res['train']:.1f} img/s, infer {res['infer']:.1f} img/s{note}", flush=True)
        print(f"  {path} first call (graph compile + run): train {res['compile_train']:.1f} s, "
              f"infer {res['compile_infer']:.1f} s", flush=True)

    # 3. ratios
    if "fast" in results and "plain" in results:
        fast, plain = results["fast"], results["plain"]
        print(f"ratio fast/plain: train {fast['train'] / plain['train']:.1f}x, "
              f"infer {fast['infer'] / plain['infer']:.1f}x")
    if "fast" in results and "onnx" in results:
        print(f"ratio onnx/fast: infer {results['onnx']['infer'] / results['fast']['infer']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
