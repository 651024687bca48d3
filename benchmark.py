"""CPU throughput of ShuffleNetV1: training step and inference, fast path vs plain path.

For one variant, batch and image size, times a full training step (forward, label-smoothed
cross entropy, backward, Momentum with weight decay: what train.py runs) and inference
(eval mode) on random data, once per convolution path:

* ``fast``: the CPU kernels of ``src/fast_ops`` (``conv_impl="fast"``);
* ``plain``: MindSpore's ``nn.Conv2d`` everywhere (``conv_impl="plain"``), slow on CPU;
* ``onnx``: inference only, ONNX Runtime on the exported plain-path network.

Prints one line per path, e.g. ``fast: train 12.3 img/s, infer 45.6 img/s``, then the
ratios. Compare with the PyTorch yardstick run in the same session on the same machine
(tools/compare_with_yardstick.py does both in one run). Optional measurements:

* ``--latency``: batch-1 inference, ms per image (p50 and p90 of ``--latency_runs``), of the
  fast path (MindSpore, graph mode: the network as a compiled function,
  ``src.model_factory.inference_function``, and called as a Cell) and of ONNX Runtime on the
  same network's export, in turns;
* ``--real_jpeg N``: training on N photo-sized JPEGs (500x375) through train.py's data
  pipeline (decode, random-resized crop, flip, colour jitter, normalise) on the same cores,
  as a ratio to the synthetic-tensor training speed; and the replay rate of an exact resume
  (``exact_data_resume``: the pipeline decodes and augments the skipped steps again);
* ``--checkpoint_every N``: what a recovery checkpoint costs (``save_checkpoint_steps``), as a
  share of the training time of N steps;
* ``--limit``: this machine's limit for the network, the float32 peak measured here (fused
  multiply-add chains on every kernel thread) over the FLOPs per image (multiply-adds of every
  convolution and the classifier, counted on the network; a training step taken as 3x the
  forward), and the fast path's share of it.

    python benchmark.py --model_size 2.0x --group 3 --batch_size 32 --image_size 224
    python benchmark.py --paths fast,onnx        # skip the slow plain path
    python benchmark.py --paths fast --profile /tmp/prof   # and where the fast path's time goes
    python benchmark.py --model_size 1.0x --paths fast --latency
    python benchmark.py --paths fast --real_jpeg 256 --checkpoint_every 200
    python benchmark.py --paths fast --limit
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
    parser.add_argument("--latency", action="store_true",
                        help="also batch-1 inference latency: fast path and ONNX Runtime, p50/p90 ms per image")
    parser.add_argument("--latency_runs", type=int, default=50, help="timed batch-1 runs (default 50)")
    parser.add_argument("--real_jpeg", type=int, default=0, metavar="N",
                        help="also train on N generated 500x375 JPEGs through train.py's data pipeline")
    parser.add_argument("--num_parallel_workers", type=int, default=0,
                        help="data workers for --real_jpeg (0: as train.py picks)")
    parser.add_argument("--limit", action="store_true",
                        help="also the machine's limit: measured float32 peak over the network's FLOPs per image, "
                             "and the fast path's share of it")
    parser.add_argument("--checkpoint_every", type=int, default=0, metavar="N",
                        help="also the cost of a recovery checkpoint every N steps")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bad = [p for p in paths if p not in PATHS]
    if bad or not paths:
        parser.error(f"--paths {args.paths!r}: unknown path(s) {bad}; choose from {list(PATHS)}")
    for key in ("batch_size", "steps", "plain_steps", "latency_runs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1, got {getattr(args, key)}")
    for key in ("real_jpeg", "checkpoint_every", "num_parallel_workers"):
        if getattr(args, key) < 0:
            parser.error(f"--{key} must be 0 or more, got {getattr(args, key)}")
    if 0 < args.real_jpeg < 2 * args.batch_size:
        parser.error(f"--real_jpeg {args.real_jpeg}: give at least two batches ({2 * args.batch_size} images)")
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


def _steps(args, conv_impl, batch_size=None):
    """(path used, train step, inference step, train cell, network) on fixed random data, as train.py trains."""
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
    batch_size = batch_size or args.batch_size
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.standard_normal((batch_size, 3, args.image_size, args.image_size)), ms.float32)
    labels = ms.Tensor(rng.randint(0, args.num_classes, (batch_size,)), ms.int32)
    loss = CrossEntropySmooth(num_classes=args.num_classes, smooth_factor=0.1)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9, weight_decay=4e-5)
    train_step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)

    # set_train walks every Cell (2-3 ms for a ShuffleNetV1): once per switch, not inside the timed calls
    mode = {"training": None}

    def use(training):
        if mode["training"] is not training:
            (train_step if training else net).set_train(training)
            mode["training"] = training

    def train(x=images, y=labels):
        use(True)
        return train_step(x, y)

    def infer():
        use(False)
        return net(images)
    return used, train, infer, train_step, net


def bench_mindspore(args, conv_impl, steps):
    """Train and inference throughput of one convolution path; returns a dict."""
    used, train_step, infer_step, _, _ = _steps(args, conv_impl)
    compile_train, train = _throughput(train_step, args.batch_size, steps)
    compile_infer, infer = _throughput(infer_step, args.batch_size, steps)
    return {"used": used, "train": train, "infer": infer,
            "compile_train": compile_train, "compile_infer": compile_infer}


def profile_fast_path(args, out_dir, steps=2, top=16):
    """Profile train and inference steps of the fast path; print milliseconds per step by operator."""
    import mindspore as ms
    _, train_step, infer_step, _, _ = _steps(args, "fast")
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


def _onnx_session(args, batch_size):
    """An ONNX Runtime session of the exported plain-path network (what export.py writes) and its input name."""
    import mindspore as ms
    import onnxruntime as ort

    from src.exporter import export_network, use_exportable_pooling
    from src.shufflenetv1 import ShuffleNetV1

    ms.set_seed(0)
    net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes)
    net.set_train(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_network(use_exportable_pooling(net), os.path.join(tmp, "shufflenetv1"), "ONNX",
                              batch_size, args.image_size)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name


def bench_onnx(args, steps):
    """ONNX Runtime inference throughput of the exported plain-path network (img/s)."""
    session, name = _onnx_session(args, args.batch_size)
    images = np.random.RandomState(0).standard_normal(
        (args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
    run = lambda: session.run(None, {name: images})  # noqa: E731
    run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return args.batch_size * steps / (time.perf_counter() - start)


def _percentiles(runs_by_name, runs, warmup=3, block=10, pause=0.05):
    """{name: (p50, p90) milliseconds} of each ``run()`` of ``runs_by_name``, over ``runs`` calls after ``warmup``.

    The runs take turns in blocks of ``block`` calls, so that a slow spell of a shared machine
    falls on all of them alike and their ratio holds. Each block starts after a ``pause`` of
    seconds: the threads a run leaves spinning (ONNX Runtime's poll for work after each run)
    slowed the first 10-20 calls of the next path by up to half (measured here: a path
    right after ONNX Runtime's block took 7.1-9.2 ms p50, 5.7-6.4 ms after another path).
    """
    times = {name: [] for name in runs_by_name}
    for first in range(0, runs, block):
        for name, run in runs_by_name.items():
            time.sleep(pause)
            for _ in range(warmup):
                run()
            for _ in range(min(block, runs - first)):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: (float(np.percentile(t, 50)), float(np.percentile(t, 90))) for name, t in times.items()}


def bench_latency(args):
    """Batch-1 inference latency (p50, p90 ms) of the fast path, as a compiled function ("fast") and called as a
    Cell ("fast_cell"), and of ONNX Runtime on the same export ("onnx"), taking turns."""
    import mindspore as ms

    from src.model_factory import inference_function

    used, _, infer_step, _, net = _steps(args, "fast", batch_size=1)
    infer = inference_function(net)
    session, name = _onnx_session(args, 1)
    image = np.random.RandomState(0).standard_normal((1, 3, args.image_size, args.image_size)).astype(np.float32)
    tensor = ms.Tensor(image)
    result = _percentiles({"fast": lambda: _sync(infer(tensor)), "fast_cell": lambda: _sync(infer_step()),
                           "onnx": lambda: session.run(None, {name: image})}, args.latency_runs)
    result["fast_used"] = used
    return result


def forward_macs(args):
    """Multiply-adds of one image's forward pass (every convolution and the classifier), counted on the plain network."""
    import mindspore as ms
    import mindspore.nn as nn

    from src.shufflenetv1 import ShuffleNetV1

    counts = []

    def count(cell, inputs, output):
        if isinstance(cell, nn.Conv2d):
            counts.append(int(np.prod(output.shape[1:])) * cell.kernel_size[0] * cell.kernel_size[1]
                          * cell.in_channels // cell.group)
        else:
            counts.append(cell.in_channels * cell.out_channels)

    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)  # (forward hooks run in PyNative mode)
    try:
        net = ShuffleNetV1(args.model_size, args.group, num_classes=args.num_classes)
        net.set_train(False)
        for _, cell in net.cells_and_names():
            if isinstance(cell, (nn.Conv2d, nn.Dense)):
                cell.register_forward_hook(count)
        net(ms.Tensor(np.zeros((1, 3, args.image_size, args.image_size), np.float32)))
    finally:
        ms.set_context(mode=mode)
    return sum(counts)


def bench_limit(args, fast):
    """The machine's limit for this network: measured float32 peak / FLOPs per image; and the fast path's share."""
    from src.fast_ops import native

    peak = native.peak_gflops()
    if peak is None:
        raise SystemExit("error: --limit needs the native kernels (python -m src.fast_ops says why they do not build)")
    macs = forward_macs(args)
    # A training step: forward, input gradient and weight gradient, each about the forward's work.
    train = peak * 1e9 / (3 * 2 * macs)
    infer = peak * 1e9 / (2 * macs)
    return {"peak": peak, "macs": macs, "train": train, "infer": infer, "train_share": fast["train"] / train,
            "infer_share": fast["infer"] / infer}


def bench_real_jpeg(args, synthetic_train):
    """Fast-path training on photo-sized JPEGs through train.py's pipeline; and an exact resume's replay rate."""
    import mindspore.dataset as ds

    from src.dataset import create_dataset
    from src.synthetic import make_photo_folder

    _, train_step, _, _, _ = _steps(args, "fast")
    classes = min(4, args.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_photo_folder(os.path.join(tmp, "photos"), num_classes=classes,
                                   per_class=-(-args.real_jpeg // classes))
        data = create_dataset(folder, do_train=True, batch_size=args.batch_size, image_size=args.image_size,
                              num_parallel_workers=args.num_parallel_workers, seed=1)
        steps = data.get_dataset_size()
        iterator = data.create_tuple_iterator(num_epochs=1)
        images, labels = next(iterator)
        _sync(train_step(images, labels))  # compile and warm up, as the synthetic measurement does
        start = time.perf_counter()
        for images, labels in iterator:
            out = train_step(images, labels)
        _sync(out)
        real = args.batch_size * (steps - 1) / (time.perf_counter() - start)
        # An exact resume (exact_data_resume) restarts the pipeline at a step by decoding and augmenting
        # the steps before it again (no training): the time to its first batch per skipped image.
        ds.config.set_fast_recovery(False)
        resumed = create_dataset(folder, do_train=True, batch_size=args.batch_size, image_size=args.image_size,
                                 num_parallel_workers=args.num_parallel_workers, seed=1)
        resumed.set_init_step(steps - 1)
        start = time.perf_counter()
        next(resumed.create_tuple_iterator(num_epochs=1))
        replay = args.batch_size * (steps - 1) / (time.perf_counter() - start)
        ds.config.set_fast_recovery(True)
    return {"train": real, "ratio": real / synthetic_train, "replay": replay}


def bench_checkpoint(args, every, step_seconds):
    """Time of one recovery checkpoint of the fast-path training state, and its share of ``every`` steps."""
    from src.callbacks import CheckpointSaver

    _, train_step, _, cell, _ = _steps(args, "fast")
    _sync(train_step())
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        saver = CheckpointSaver(tmp, steps_per_epoch=10 ** 6, keep_max=5, total_epochs=1, every_steps=every,
                                extra={"model_size": args.model_size})
        for k in range(1, 6):
            start = time.perf_counter()
            saver.save(cell, k * every)
            times.append(time.perf_counter() - start)
        size = os.path.getsize(saver.last_saved)
    save = float(np.median(times))
    return {"save_ms": save * 1000, "mib": size / 2 ** 20, "share": save / (every * step_seconds)}


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

    # 4. optional measurements
    if args.latency:
        lat = bench_latency(args)
        results["latency"] = lat
        (f50, f90), (c50, c90), (o50, o90) = lat["fast"], lat["fast_cell"], lat["onnx"]
        print(f"latency fast: batch 1, p50 {f50:.2f} ms, p90 {f90:.2f} ms per image", flush=True)
        print(f"latency fast, called as a Cell: batch 1, p50 {c50:.2f} ms, p90 {c90:.2f} ms per image", flush=True)
        print(f"latency onnx: batch 1, p50 {o50:.2f} ms, p90 {o90:.2f} ms per image", flush=True)
        print(f"ratio fast/onnx: batch-1 speed {o50 / f50:.2f}x (p50)", flush=True)
    needs_train = args.real_jpeg or args.checkpoint_every or args.limit
    if needs_train and "fast" not in results:
        results["fast"] = bench_mindspore(args, "fast", args.steps)
    if args.real_jpeg:
        real = bench_real_jpeg(args, results["fast"]["train"])
        results["real_jpeg"] = real
        print(f"real jpeg: train {real['train']:.1f} img/s on {args.real_jpeg} JPEGs of 500x375 through train.py's "
              f"pipeline, {real['ratio']:.2f}x the synthetic-tensor speed", flush=True)
        print(f"exact resume: the pipeline replays {real['replay']:.0f} img/s (decoding and augmenting the skipped "
              "steps)", flush=True)
    if args.checkpoint_every:
        ckpt = bench_checkpoint(args, args.checkpoint_every, args.batch_size / results["fast"]["train"])
        results["checkpoint"] = ckpt
        print(f"checkpoint: {ckpt['save_ms']:.0f} ms per save ({ckpt['mib']:.1f} MiB); every "
              f"{args.checkpoint_every} steps {100 * ckpt['share']:.2f}% of the training time", flush=True)
    if args.limit:
        limit = bench_limit(args, results["fast"])
        results["limit"] = limit
        print(f"limit: {limit['peak']:.0f} GFLOP/s float32 peak measured on this machine; {limit['macs'] / 1e6:.1f} M "
              f"multiply-adds per image forward, 3x that per training step: at most {limit['train']:.1f} img/s "
              f"training, {limit['infer']:.1f} img/s inference", flush=True)
        print(f"share of the limit: fast path train {100 * limit['train_share']:.1f}%, infer "
              f"{100 * limit['infer_share']:.1f}%", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.profile:
        profile_fast_path(args, args.profile)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
