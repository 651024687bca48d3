"""The README's main command, on a smaller budget: data made, trained, evaluated, exported, summarised."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    args = [sys.executable, os.path.join(ROOT, "demo.py"), "--output_dir", str(out), "--epochs", "2",
            "--train_per_class", "8", "--val_per_class", "3", "--image_size", "32"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout.split("=== demo summary")[1]
    assert "accuracy:    Top-1 " in summary and "on 18 validation images (chance: 16.7%)" in summary
    assert (out / "shufflenetv1_demo.mindir").stat().st_size > 100_000
    assert (out / "checkpoints" / "shufflenetv1-2_1.ckpt").is_file()
    assert (out / "checkpoints" / "eval_log.txt").read_text().startswith("result:{'Loss'")
    assert (out / "data" / "train" / "checker").is_dir()
    # evaluation and export read the variant from the checkpoint (default_config.yaml says 2.0x)
    assert "using model_size=0.5x recorded in" in proc.stdout and "ShuffleNetV1 0.5x g3, 6 classes" in proc.stdout
    # a second run reuses the data and continues the finished training: nothing to do, nothing replaced
    ckpts = [n for n in os.listdir(out / "checkpoints") if n.endswith(".ckpt")]
    before = {n: os.path.getmtime(out / "checkpoints" / n) for n in ckpts}
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do: the checkpoint is at step 2" in again.stdout
    assert {n: os.path.getmtime(out / "checkpoints" / n) for n in before} == before


def test_demo_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "demo.py"), "--image_size", "16"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--image_size 16: the network needs at least 32" in proc.stderr
