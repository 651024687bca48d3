"""This repo's CPU speed next to an outside PyTorch yardstick, measured in one run.

Runs, one after the other on this machine, the PyTorch ShuffleNetV1 timing script of
``--bench_dir`` (``torch_bench.py MODEL_SIZE BATCH IMAGE_SIZE``, which prints ``train X
img/s, infer Y img/s``) and ``benchmark.py`` for the same variant, batch and image size,
for each ``--model_sizes`` entry (group 3), then prints a Markdown table with the ratios
(ours / PyTorch). Repeat with ``--rounds`` to see the noise; each round interleaves the two.

    python tools/compare_with_yardstick.py --bench_dir ../shared/bench
    python tools/compare_with_yardstick.py --bench_dir ../shared/bench --model_sizes 1.0x --rounds 2

The yardstick is only run as a separate program, never imported. ``--torch_python`` is
the interpreter that has ``torch`` (default: this one; ``make test`` installs torch).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    parser.add_argument("--mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"),
                        help="benchmark.py --mode (default GRAPH, as train.py runs)")
    args = parser.parse_args(argv)
    script = os.path.join(args.bench_dir, "torch_bench.py")
    if not os.path.isfile(script):
        parser.error(f"--bench_dir {args.bench_dir!r}: no torch_bench.py there (the PyTorch yardstick)")
    args.model_sizes = [m.strip() for m in args.model_sizes.split(",") if m.strip()]
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def _run(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def measure_torch(args, model_size):
    out = _run([args.torch_python, "torch_bench.py", model_size, str(args.batch_size), str(args.image_size)],
               cwd=args.bench_dir)
    match = _TORCH_LINE.search(out)
    if not match:
        sys.exit(f"error: unexpected output of torch_bench.py (no 'train X img/s, infer Y img/s'):\n{out}")
    print("  torch:", out.strip().splitlines()[-1], flush=True)
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
        torch_runs, our_runs = [], []
        for round_ in range(args.rounds):
            print(f"{model_size} round {round_ + 1}/{args.rounds}", flush=True)
            torch_runs.append(measure_torch(args, model_size))
            our_runs.append(measure_ours(args, model_size))
        torch = {key: _median([r[key] for r in torch_runs]) for key in ("train", "infer")}
        for path in ("fast", "plain", "onnx"):
            if path not in our_runs[0]:
                continue
            for key in ("train", "infer"):
                if key in our_runs[0][path]:
                    ours = _median([r[path][key] for r in our_runs])
                    rows.append((model_size, key, f"MindSpore {path}" if path != "onnx" else "ONNX Runtime",
                                 ours, torch[key]))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print("| variant | step | this repo | img/s | PyTorch img/s | ratio |")
    print("|---|---|---|---|---|---|")
    for model_size, key, what, ours, torch in rows:
        print(f"| {model_size} g3 | {key} | {what} | {ours:.1f} | {torch:.1f} | {ours / torch:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
