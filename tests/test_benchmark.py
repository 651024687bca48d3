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
                 "--checkpoint_every", "200", "--limit"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lat = {path: re.search(rf"^latency {path}: batch 1, p50 ([\d.]+) ms, p90 ([\d.]+) ms per image$", out,
                           re.M).groups() for path in ("fast", "onnx")}
    lat["fast_cell"] = re.search(r"^latency fast, called as a Cell: batch 1, p50 ([\d.]+) ms, p90 ([\d.]+) ms per "
                                 r"image$", out, re.M).groups()
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
    limit = re.search(r"^limit: (\d+) GFLOP/s float32 peak measured on this machine; ([\d.]+) M multiply-adds per "
                      r"image forward, 3x that per training step: at most ([\d.]+) img/s training, ([\d.]+) img/s "
                      r"inference$", out, re.M)
    assert limit, out
    peak, mega_macs, train_limit, infer_limit = (float(v) for v in limit.groups())
    # 0.5x g3 at 32 px, 5 classes: 0.8 M multiply-adds (38 M at 224 px with 1000 classes, as Megvii counts);
    # 2 flops each, 3x per training step
    assert 0.7 <= mega_macs <= 0.9 and peak > 1, out
    assert train_limit == pytest.approx(peak * 1e3 / (6 * mega_macs), rel=0.06), out
    assert infer_limit == pytest.approx(3 * train_limit, rel=0.01), out
    share = re.search(r"^share of the limit: fast path train ([\d.]+)%, infer ([\d.]+)%$", out, re.M)
    assert share and _ratio_of_rounded(f"{float(share.group(1)) / 100:.3f}", fast, limit.group(3)), out


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


# A stand-in for the yardstick's network (torch_ref.ShuffleNetV1(group, model_size)): small, so the
# channels_last runner's timing is quick; it must still train and infer in channels_last.
_FAKE_TORCH_REF = """import torch.nn as nn


class ShuffleNetV1(nn.Module):
    def __init__(self, group=3, model_size="2.0x", num_classes=1000):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.body(x)
"""


@pytest.mark.slow
def test_compare_with_yardstick_table(tmp_path):
    (tmp_path / "torch_bench.py").write_text(_FAKE_YARDSTICK)
    (tmp_path / "torch_ref.py").write_text(_FAKE_TORCH_REF)
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path), "--model_sizes", "0.5x",
                 "--batch_size", "2", "--image_size", "32", "--paths", "fast,onnx", "--mode", "PYNATIVE"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| variant | step | this repo | img/s | PyTorch channels_last img/s | ratio | PyTorch nchw img/s | " \
           "ratio |" in proc.stdout, proc.stdout
    rows = re.findall(r"^\| 0\.5x g3 \| (train|infer) \| (MindSpore fast|ONNX Runtime) \| ([\d.]+) \| ([\d.]+) \| "
                      r"([\d.]+)x \| ([\d.]+) \| ([\d.]+)x \|$", proc.stdout, re.M)
    assert [(step, what) for step, what, *_ in rows] == [("train", "MindSpore fast"), ("infer", "MindSpore fast"),
                                                         ("infer", "ONNX Runtime")], proc.stdout
    for step, _, ours, last, last_ratio, nchw, nchw_ratio in rows:
        assert float(nchw) == (40.0 if step == "train" else 100.0)  # torch_bench.py's figures, as printed
        assert float(nchw_ratio) == pytest.approx(float(ours) / float(nchw), abs=0.006)
        assert float(last) > 0 and _ratio_of_rounded(last_ratio, ours, last), proc.stdout
    assert re.search(r"torch channels_last: torch \S+ channels_last ShuffleNetV1 0\.5x g3 batch 2 32px: train", proc.stdout)


def test_compare_with_yardstick_channels_last_needs_the_network(tmp_path):
    (tmp_path / "torch_bench.py").write_text(_FAKE_YARDSTICK)
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "no torch_ref.py there" in proc.stderr and "--torch_layouts nchw" in proc.stderr
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path), "--torch_layouts", "nhwc"],
                timeout=60)
    assert proc.returncode == 2 and "--torch_layouts nhwc: choose from channels_last, nchw" in proc.stderr


def test_compare_with_yardstick_needs_the_yardstick(tmp_path):
    proc = _run(["tools/compare_with_yardstick.py", "--bench_dir", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "no torch_bench.py there" in proc.stderr, proc.stderr


def test_forward_macs_match_the_published_counts():
    """benchmark.py --limit counts 137.5 M multiply-adds for 1.0x g3 at 224 px: Megvii publishes 138 M (the
    ShuffleNet paper's Table 2 rounds to 140 M)."""
    sys.path.insert(0, ROOT)
    import argparse

    import benchmark
    macs = benchmark.forward_macs(argparse.Namespace(model_size="1.0x", group=3, num_classes=1000, image_size=224))
    assert 136e6 <= macs <= 139e6, macs
