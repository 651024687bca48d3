"""This repo's CPU speed next to an outside PyTorch yardstick, measured in one run.

Runs, one after the other on this machine, the PyTorch ShuffleNetV1 timing script of
``--bench_dir`` (``torch_bench.py MODEL_SIZE BATCH IMAGE_SIZE``, which prints ``train X
img/s, infer Y img/s``) and ``benchmark.py`` for the same variant, batch and image size,
for each ``--model_sizes`` entry (group 3), then prints a Markdown table with the ratios
(ours / PyTorch). Repeat with ``--rounds`` to see the noise; each round interleaves the two.

``--torch_layouts`` picks PyTorch's memory formats: ``nchw`` (torch_bench.py as it is) and
``channels_last`` (PyTorch's fastest eager CPU mode here: tools/torch_channels_last.py, the
same steps on the yardstick's network in channels_last, run in the yardstick's folder).

    python tools/compare_with_yardstick.py --bench_dir ../shared/bench
    python tools/compare_with_yardstick.py --bench_dir ../shared/bench --model_sizes 1.0x --rounds 2
    python tools/compare_with_yardstick.py --bench_dir ../shared/bench --model_sizes 2.0x --torch_layouts nchw

The yardstick is only run as a separate program, never imported. ``--torch_python`` is
the interpreter that has ``torch`` (default: this one; ``make test`` installs torch).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNELS_LAST_RUNNER = os.path.join(ROOT, "tools", "torch_channels_last.py")
TORCH_LAYOUTS = ("channels_last", "nchw")
_TORCH_LINE = re.compile(r"train ([\d.]+) img/s, infer ([\d.]+) img/s")
_OURS_LINE = re.compile(r"^(fast|plain): train ([\d.]+) img/s, infer ([\d.]+) img/s", re.M)
_ONNX_LINE = re.compile(r"^onnx: infer ([\d.]+) img/s", re.M)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench_dir", required=True, help="folder with the yardstick's torch_bench.py")
    parser.add_argument("--torch_python", default=sys.executable, help="Python with torch (default: this one)")
    parser.add_argument("--model_sizes", default="2.0x,1.0x", help="comma-separated (default 2.0x,1.0x)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--paths", default="fast,onnx", help="benchmark.py --paths (default fast,onnx)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each (default 1)")
    parser.add_argument("--torch_layouts", default="channels_last,nchw",
                        help=f"PyTorch memory formats, comma-separated, from {', '.join(TORCH_LAYOUTS)} "
                             "(default: both)")
    parser.add_argument("--mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"),
                        help="benchmark.py --mode (default GRAPH, as train.py runs)")
    args = parser.parse_args(argv)
    script = os.path.join(args.bench_dir, "torch_bench.py")
    if not os.path.isfile(script):
        parser.error(f"--bench_dir {args.bench_dir!r}: no torch_bench.py there (the PyTorch yardstick)")
    args.model_sizes = [m.strip() for m in args.model_sizes.split(",") if m.strip()]
    args.torch_layouts = [m.strip() for m in args.torch_layouts.split(",") if m.strip()]
    wrong = [m for m in args.torch_layouts if m not in TORCH_LAYOUTS]
    if wrong or not args.torch_layouts:
        parser.error(f"--torch_layouts {','.join(wrong) or '(empty)'}: choose from {', '.join(TORCH_LAYOUTS)}")
    if "channels_last" in args.torch_layouts and not os.path.isfile(os.path.join(args.bench_dir, "torch_ref.py")):
        parser.error(f"--bench_dir {args.bench_dir!r}: no torch_ref.py there (the yardstick's network, which "
                     "channels_last runs); or pass --torch_layouts nchw")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def _run(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def measure_torch(args, model_size, layout):
    script = "torch_bench.py" if layout == "nchw" else CHANNELS_LAST_RUNNER
    out = _run([args.torch_python, script, model_size, str(args.batch_size), str(args.image_size)],
               cwd=args.bench_dir)
    match = _TORCH_LINE.search(out)
    if not match:
        sys.exit(f"error: unexpected output of {os.path.basename(script)} (no 'train X img/s, infer Y img/s'):\n{out}")
    print(f"  torch {layout}:", out.strip().splitlines()[-1], flush=True)
    return {"train": float(match.group(1)), "infer": float(match.group(2))}


def measure_ours(args, model_size):
    out = _run([sys.executable, "benchmark.py", "--model_size", model_size, "--group", "3", "--batch_size",
                str(args.batch_size), "--image_size", str(args.image_size), "--paths", args.paths, "--mode", args.mode],
               cwd=ROOT)
    result = {}
    for path, train, infer in _OURS_LINE.findall(out):
        result[path] = {"train": float(train), "infer": float(infer)}
        print(f"  {path}: train {train} img/s, infer {infer} img/s", flush=True)
    match = _ONNX_LINE.search(out)
    if match:
        result["onnx"] = {"infer": float(match.group(1))}
        print(f"  onnx: infer {match.group(1)} img/s", flush=True)
    return result


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main(argv=None):
    args = parse_args(argv)
    print(f"{os.cpu_count()} CPUs, batch {args.batch_size}, {args.image_size} px, group 3, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for model_size in args.model_sizes:
        torch_runs, our_runs = {layout: [] for layout in args.torch_layouts}, []
        for round_ in range(args.rounds):
            print(f"{model_size} round {round_ + 1}/{args.rounds}", flush=True)
            for layout in args.torch_layouts:
                torch_runs[layout].append(measure_torch(args, model_size, layout))
            our_runs.append(measure_ours(args, model_size))
        torch = {layout: {key: _median([r[key] for r in runs]) for key in ("train", "infer")}
                 for layout, runs in torch_runs.items()}
        for path in ("fast", "plain", "onnx"):
            if path not in our_runs[0]:
                continue
            for key in ("train", "infer"):
                if key in our_runs[0][path]:
                    ours = _median([r[path][key] for r in our_runs])
                    rows.append((model_size, key, f"MindSpore {path}" if path != "onnx" else "ONNX Runtime",
                                 ours, [torch[layout][key] for layout in args.torch_layouts]))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    heads = [f"PyTorch {layout} img/s | ratio" for layout in args.torch_layouts]
    print(f"| variant | step | this repo | img/s | {' | '.join(heads)} |")
    print("|---|---|---|---|" + "---|---|" * len(heads))
    for model_size, key, what, ours, torches in rows:
        cells = " | ".join(f"{t:.1f} | {ours / t:.2f}x" for t in torches)
        print(f"| {model_size} g3 | {key} | {what} | {ours:.1f} | {cells} |")
    return rows


if __name__ == "__main__":
    main()
