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
    python benchmark.py --paths fast --profile /tmp/prof   # and where the fast path's time goes
"""
import argparse
import collections
import csv
import glob
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
    parser.add_argument("--profile", default="", metavar="DIR",
                        help="also profile the fast path (MindSpore profiler output in DIR) and print the "
                             "time per operator")
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


def _steps(args, conv_impl):
    """(network, train step, inference step) on fixed random data, as train.py trains."""
    import mindspore as ms
    import mindspore.nn as nn

    from src.crossentropysmooth import CrossEntropySmooth
    from src.fast_ops import accelerate, resolve_conv_impl
    from src.shufflenetv1 import ShuffleNetV1

    ms.set_seed(0)
    net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes)
    used = resolve_conv_impl(conv_impl)
    if used == "fast":
        accelerate(net)
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)), ms.float32)
    labels = ms.Tensor(rng.randint(0, args.num_classes, (args.batch_size,)), ms.int32)
    loss = CrossEntropySmooth(num_classes=args.num_classes, smooth_factor=0.1)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9, weight_decay=4e-5)
    train_step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)

    def train():
        train_step.set_train(True)
        return train_step(images, labels)

    def infer():
        net.set_train(False)
        return net(images)
    return used, train, infer


def bench_mindspore(args, conv_impl, steps):
    """Train and inference throughput of one convolution path; returns a dict."""
    used, train_step, infer_step = _steps(args, conv_impl)
    compile_train, train = _throughput(train_step, args.batch_size, steps)
    compile_infer, infer = _throughput(infer_step, args.batch_size, steps)
    return {"used": used, "train": train, "infer": infer,
            "compile_train": compile_train, "compile_infer": compile_infer}


def profile_fast_path(args, out_dir, steps=2, top=16):
    """Profile train and inference steps of the fast path; print milliseconds per step by operator."""
    import mindspore as ms
    _, train_step, infer_step = _steps(args, "fast")
    for name, step in (("train", train_step), ("infer", infer_step)):
        _sync(step())  # compile outside the profile
        folder = os.path.join(out_dir, name)
        profiler = ms.Profiler(output_path=folder)
        for _ in range(steps):
            out = step()
        _sync(out)
        profiler.stop()
        profiler.analyse()
        _print_profile(name, folder, steps, top)


def _print_profile(name, folder, steps, top):
    found = glob.glob(os.path.join(folder, "**", "cpu_op_detail_info_0.csv"), recursive=True)
    if not found:
        print(f"profile {name}: no cpu_op_detail_info_0.csv under {folder} (profiler output format changed?)")
        return
    # Each op is named after the innermost Cell class in its scope (for a backward op: of
    # the forward Cell it differentiates; "Custom" ops are the native kernels).
    times = collections.defaultdict(float)
    with open(found[0], newline="") as handle:
        for row in csv.DictReader(handle):
            full = row["full_op_name"]
            cells = [part.split("-", 1)[1] for part in full.split("/")[:-1] if "-" in part]
            where = (cells[-1] if cells else "-") + (" backward" if full.startswith("Gradients") else "")
            times[(where, row["op_type"])] += float(row["op_total_time(ms)"]) / steps
    total = sum(times.values())
    print(f"profile {name}: {total:.1f} ms of operator time per step; top operators (Cell, type):")
    for (where, op_type), ms_ in sorted(times.items(), key=lambda item: -item[1])[:top]:
        print(f"  {ms_:8.1f} ms {100 * ms_ / total:5.1f}%  {where} {op_type}")


def bench_onnx(args, steps):
    """ONNX Runtime inference throughput of the exported plain-path network (img/s)."""
    import mindspore as ms
    import onnxruntime as ort

    from src.exporter import export_network, use_exportable_pooling
    from src.shufflenetv1 import ShuffleNetV1

    ms.set_seed(0)
    net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes)
    net.set_train(False)
    images = np.random.RandomState(0).standard_normal(
        (args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:  # what export.py writes
        path = export_network(use_exportable_pooling(net), os.path.join(tmp, "shufflenetv1"), "ONNX",
                              args.batch_size, args.image_size)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
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

    # 4. optionally, where the fast path's time goes
    if args.profile:
        profile_fast_path(args, args.profile)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
