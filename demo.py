"""The README's main command (make demo): the whole job on a small data set made locally.

Steps: make a 6-class texture data set (once; reused) -> train ShuffleNetV1 0.5x g3 on CPU
with train.py -> evaluate the last checkpoint with eval.py -> export MINDIR with export.py
(both read the network's variant from the checkpoint) -> print a summary (accuracy, time,
where the files are). Each step runs the entry point as a command, as a user would; run
again, the demo continues its run (--resume auto) instead of starting over.

    python demo.py [--output_dir demo_output] [--epochs 40] [--image_size 48]
"""
import argparse
import ast
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from src.checkpoint_utils import list_checkpoints  # noqa: E402  pylint: disable=wrong-import-position
from src.synthetic import SHAPES, make_shapes_dataset  # noqa: E402  pylint: disable=wrong-import-position

NUM_CLASSES = len(SHAPES)


def _run(step, script, argv):
    """Run ``python script argv`` from the repository, showing its output; returns the output lines."""
    print(f"\n=== {step}: python {script} {' '.join(argv)}", flush=True)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, script), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    if proc.wait():
        raise SystemExit(f"demo stopped: {script} failed (exit code {proc.returncode}); see the message above")
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "demo_output"), help="where everything goes")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--image_size", type=int, default=48, help="network input size (>= 32)")
    parser.add_argument("--train_per_class", type=int, default=200, help="training images per class")
    parser.add_argument("--val_per_class", type=int, default=50, help="validation images per class")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: need at least 1")
    if args.image_size < 32:
        parser.error(f"--image_size {args.image_size}: the network needs at least 32")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    out = os.path.abspath(args.output_dir)
    print(f"1/4 making the data set in {out}/data (6 texture classes, made once and reused)", flush=True)
    train_dir, val_dir = make_shapes_dataset(os.path.join(out, "data"), num_classes=NUM_CLASSES,
                                             train_per_class=args.train_per_class,
                                             val_per_class=args.val_per_class, image_size=64, seed=0)
    ckpt_dir = os.path.join(out, "checkpoints")
    common = ["--config_path", os.path.join(ROOT, "default_config.yaml"), "--device_target", "CPU",
              "--image_size", str(args.image_size)]
    train_argv = common + ["--model_size", "0.5x", "--group", "3", "--num_classes", str(NUM_CLASSES),
                           "--train_dataset_path", train_dir, "--eval_dataset_path", val_dir,
                           "--batch_size", "32", "--epoch_size", str(args.epochs), "--lr_max", "0.004",
                           "--warmup_epochs", "2", "--lr_decay_mode", "cosine", "--eval_interval",
                           str(max(1, args.epochs // 3)), "--save_ckpt_path", ckpt_dir, "--keep_checkpoint_max", "3",
                           "--resume", "auto"]  # a run already in ckpt_dir continues (none: from scratch)
    _run("2/4 training", "train.py", train_argv)
    last = list_checkpoints(ckpt_dir)[-1][2]
    eval_lines = _run("3/4 evaluating", "eval.py", common + ["--eval_dataset_path", val_dir, "--ckpt_path", last,
                                                            "--batch_size", "50"])
    result_line = next(line for line in eval_lines if line.startswith("result:"))
    result = ast.literal_eval(result_line[len("result:"):result_line.index(", ckpt:")])
    export_name = os.path.join(out, "shufflenetv1_demo")
    _run("4/4 exporting", "export.py", common + ["--ckpt_path", last, "--file_format", "MINDIR",
                                                "--batch_size", "1", "--file_name", export_name])
    minutes, seconds = divmod(time.time() - start, 60)
    chance = 1.0 / NUM_CLASSES
    print("\n=== demo summary")
    print(f"data:        {train_dir} and {val_dir} ({NUM_CLASSES} classes)")
    print(f"accuracy:    Top-1 {result['Top_1_Acc']:.1%}, Top-5 {result['Top_5_Acc']:.1%} "
          f"on {NUM_CLASSES * args.val_per_class} validation images (chance: {chance:.1%})")
    print(f"checkpoint:  {last}")
    print(f"training:    {os.path.join(ckpt_dir, 'train_log.jsonl')}, curves {os.path.join(ckpt_dir, 'curves.png')}")
    print(f"eval log:    {os.path.join(ckpt_dir, 'eval_log.txt')}")
    print(f"exported:    {export_name}.mindir")
    print(f"time:        {int(minutes)} min {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
