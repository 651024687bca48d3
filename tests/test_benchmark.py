"""benchmark.py and tools/compare_with_yardstick.py: their output lines, ratios and argument checks."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PyNative: the output and the ratios are checked here, not graph-mode speed (no graph compile per path)
SMALL = ["--model_size", "0.5x", "--batch_size", "2", "--image_size", "32", "--num_classes", "5", "--steps", "1",
         "--plain_steps", "1", "--mode", "PYNATIVE"]
_PATH_LINE = r"^{}: train ([\d.]+) img/s, infer ([\d.]+) img/s$"


def _run(args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _ratio_of_rounded(ratio, numerator, denominator):
    """Whether the printed ``ratio`` can be the ratio of the unrounded figures behind the printed ``numerator``
    and ``denominator`` (benchmark.py divides unrounded figures, then rounds each; decimals as printed)."""
    def half_unit(text):
        return 0.5 * 10 ** -len(text.partition(".")[2])
    num, den, value = float(numerator), float(denominator), float(ratio)
    low = (num - half_unit(numerator)) / (den + half_unit(denominator))
    high = (num + half_unit(numerator)) / max(den - half_unit(denominator), 1e-12)
    return low - half_unit(ratio) <= value <= high + half_unit(ratio)


@pytest.mark.slow
def test_benchmark_prints_one_line_per_path_and_the_ratios():
    proc = _run(["benchmark.py", *SMALL, "--paths", "fast,plain,onnx"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    speeds, texts = {}, {}
    for path in ("fast", "plain"):
        match = re.search(_PATH_LINE.format(path), out, re.M)
        assert match, out
        texts[path] = match.groups()
        speeds[path] = [float(v) for v in match.groups()]
        assert all(v > 0 for v in speeds[path])
    onnx = re.search(r"^onnx: infer ([\d.]+) img/s", out, re.M)
    assert onnx and float(onnx.group(1)) > 0, out
    ratio = re.search(r"^ratio fast/plain: train ([\d.]+)x, infer ([\d.]+)x$", out, re.M)
    assert ratio, out
    assert _ratio_of_rounded(ratio.group(1), texts["fast"][0], texts["plain"][0]), out
    assert re.search(r"^ratio onnx/fast: infer [\d.]+x$", out, re.M), out


@pytest.mark.slow
def test_benchmark_latency_real_jpeg_and_checkpoint_cost():
    proc = _run(["benchmark.py", *SMALL, "--paths", "fast", "--latency", "--latency_runs", "3", "--real_jpeg", "8",
                 "--checkpoint_every", "200"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lat = {path: re.search(rf"^latency {path}: batch 1, p50 ([\d.]+) ms, p90 ([\d.]+) ms per image$", out,
                           re.M).groups() for path in ("fast", "onnx")}
    assert all(0 < float(p50) <= float(p90) for p50, p90 in lat.values()), out
    ratio = re.search(r"^ratio fast/onnx: batch-1 speed ([\d.]+)x \(p50\)$", out, re.M)
    assert ratio and _ratio_of_rounded(ratio.group(1), lat["onnx"][0], lat["fast"][0]), out
    real = re.search(r"^real jpeg: train ([\d.]+) img/s on 8 JPEGs of 500x375 through train.py's pipeline, "
                     r"([\d.]+)x the synthetic-tensor speed$", out, re.M)
    fast = re.search(_PATH_LINE.format("fast"), out, re.M).group(1)
    assert real and _ratio_of_rounded(real.group(2), real.group(1), fast), out
    assert re.search(r"^exact resume: the pipeline replays \d+ img/s", out, re.M), out
    ckpt = re.search(r"^checkpoint: (\d+) ms per save \(([\d.]+) MiB\); every 200 steps ([\d.]+)% of the training "
                     r"time$", out, re.M)
    assert ckpt and float(ckpt.group(2)) > 1 and float(ckpt.group(3)) > 0, out


@pytest.mark.parametrize("args,message", [(["--paths", "fast,gpu"], "unknown path(s) ['gpu']"),
                                          (["--image_size", "16"], "--image_size must be at least 32"),
                                          (["--steps", "0"], "--steps must be at least 1"),
                                          (["--real_jpeg", "3"], "give at least two batches")])
def test_benchmark_rejects_bad_arguments(args, message):
    proc = _run(["benchmark.py", *args], timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


_FAKE_YARDSTICK = """import sys
size, batch, px = sys.argv[1:4]
speeds = {"0.5x": (40.0, 100.0)}[size]
print(f"fake ShuffleNetV1 {size} batch {batch} {px}px: train {speeds[0]} img/s, infer {speeds[1]} img/s")
"""


@pytest.mark.slow
def test_compare_with_yardstick_table(tmp_path):
    (tmp_path / "torch_bench.py").write_text(_FAKE_YARDSTICK)
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path), "--model_sizes", "0.5x",
                 "--batch_size", "2", "--image_size", "32", "--paths", "fast,onnx", "--mode", "PYNATIVE"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| 0\.5x g3 \| (train|infer) \| (MindSpore fast|ONNX Runtime) \| ([\d.]+) \| ([\d.]+) \| "
                      r"([\d.]+)x \|$", proc.stdout, re.M)
    assert [(step, what) for step, what, *_ in rows] == [("train", "MindSpore fast"), ("infer", "MindSpore fast"),
                                                         ("infer", "ONNX Runtime")], proc.stdout
    for step, _, ours, torch, ratio in rows:
        assert float(torch) == (40.0 if step == "train" else 100.0)
        assert float(ratio) == pytest.approx(float(ours) / float(torch), abs=0.006)


def test_compare_with_yardstick_needs_the_yardstick(tmp_path):
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "no torch_bench.py there" in proc.stderr, proc.stderr
