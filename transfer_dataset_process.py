"""The split of transfer learning, as a command:

    python transfer_dataset_process.py --dataset_path flower_photos [--seed 1] [--train_ratio 0.8]
                                       [--output_path DIR]

Prints, per class, how many photos go to training and to validation: the split that
train.py, eval.py and predict_grid.py use with ``is_transfer`` (``src.dataset.split_files``:
reproducible, 80/20 per class by default). With ``--output_path`` it also writes the split as
two ImageNet-style folders, ``DIR/train/<class>/`` and ``DIR/val/<class>/`` (hard links where
the file system allows, else copies), e.g. for ``infer_onnx.py --dataset_path DIR/val``,
``preprocess.py`` or ``eval.py --eval_dataset_path DIR/val``. DIR must be new or empty.
"""
import argparse
import os
import shutil
import sys

from src.dataset import split_files
from src.model_utils.errors import UsageError, run_reporting_errors

__all__ = ["write_split", "main"]


def write_split(dataset_path, seed=1, train_ratio=0.8, output_path=""):
    """Print the split of ``dataset_path`` and write it under ``output_path`` if given; returns (train, val, names)."""
    if not os.path.isdir(dataset_path):
        raise UsageError(f"dataset_path={dataset_path!r} is not a directory; expected ROOT/<class>/<image>")
    if output_path and os.path.exists(output_path) and (not os.path.isdir(output_path) or os.listdir(output_path)):
        raise UsageError(f"output_path={output_path!r} exists and is not an empty folder; choose a new one, so "
                         "that nothing in it is replaced")
    train, val, names = split_files(dataset_path, seed=seed, train_ratio=train_ratio)
    for label, name in enumerate(names):
        n_train = sum(1 for _, lab in train if lab == label)
        n_val = sum(1 for _, lab in val if lab == label)
        print(f"{label:4d} {name}: {n_train} training, {n_val} validation")
    print(f"{len(names)} classes: {len(train)} training and {len(val)} validation images (seed {seed}, "
          f"train_ratio {train_ratio})")
    if output_path:
        for part, files in (("train", train), ("val", val)):
            for path, label in files:
                folder = os.path.join(output_path, part, names[label])
                os.makedirs(folder, exist_ok=True)
                target = os.path.join(folder, os.path.basename(path))
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
        print(f"wrote {os.path.abspath(output_path)}/train and /val (ImageNet-style folders)")
    return train, val, names


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_path", required=True, help="one folder of class sub-folders, ROOT/<class>/<image>")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split (train.py's --seed; default 1)")
    parser.add_argument("--train_ratio", type=float, default=0.8, help="share of each class for training (0.8)")
    parser.add_argument("--output_path", default="", help="also write DIR/train and DIR/val folders")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    code, _ = run_reporting_errors(write_split, args.dataset_path, args.seed, args.train_ratio, args.output_path)
    return code


if __name__ == "__main__":
    sys.exit(main())
