"""Score the result files of the Ascend 310 program:

    python postprocess.py --result_path DIR --label_file FILE [--log_path acc.log]

DIR holds ``<img_id>_0.bin`` per image (float32 logits, as written by
``ascend310_infer``); FILE holds one ``img_id:label`` line per image (written by
``tools/make_label_file.py``). Every labelled image must have its result file and every
result file its label; the class count is the length of the logits. Prints and writes
``Top_1_Acc=..%, Top_5_Acc=..%``, counted by the one rule of ``src/metrics.py`` (the rule of
eval.py and infer_onnx.py: equal logits in class order).
"""
import argparse
import os
import sys

import numpy as np

from src.metrics import format_accuracy, topk_accuracy
from src.model_utils.errors import EXIT_USAGE, UsageError, report_error, run_reporting_errors

__all__ = ["PostprocessError", "RESULT_SUFFIX", "read_label_file", "read_results", "score_results", "main"]

RESULT_SUFFIX = "_0.bin"


class PostprocessError(ValueError):
    """Result files or a label file that cannot be scored; the message names the file."""


def read_label_file(label_file):
    """``{img_id: label}`` from ``img_id:label`` lines (blank lines ignored).

    Raises:
        PostprocessError: a missing file, a malformed line (named by number), a repeated img_id.
    """
    if not os.path.isfile(label_file):
        raise UsageError(f"label file {label_file!r} does not exist; write it with: python "
                         f"tools/make_label_file.py --data_path DATA --output {label_file}")
    labels = {}
    with open(label_file, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            img_id, sep, label = line.rpartition(":")
            if not sep or not img_id or not label.strip().isdigit():
                raise PostprocessError(f"{label_file}:{number}: {line!r} is not of the form img_id:label "
                                       f"(label a class index >= 0)")
            if img_id in labels:
                raise PostprocessError(f"{label_file}:{number}: img_id {img_id!r} appears twice")
            labels[img_id] = int(label)
    if not labels:
        raise PostprocessError(f"label file {label_file!r} holds no img_id:label lines")
    return labels


def _names(items, limit=5):
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def read_results(result_path, labels):
    """Logits of every labelled image, as (logits (N, classes) float32, labels (N,) int64, img_ids).

    Raises:
        PostprocessError: missing folder, result files without a label or labels without a
            result file (named), files whose size is not that of the others or not whole
            float32 values, a label outside the class count.
    """
    if not os.path.isdir(result_path):
        raise UsageError(f"result_path={result_path!r} is not a directory (the folder of <img_id>_0.bin files "
                         "the Ascend 310 program writes)")
    found = {e.name[:-len(RESULT_SUFFIX)]: e.path for e in os.scandir(result_path)
             if e.is_file() and e.name.endswith(RESULT_SUFFIX)}
    if not found:
        raise PostprocessError(f"no result files (<img_id>{RESULT_SUFFIX}) in {result_path!r}")
    missing = set(labels) - set(found)
    if missing:
        raise PostprocessError(f"{len(missing)} labelled image(s) have no result file in {result_path!r}: "
                               f"{_names(i + RESULT_SUFFIX for i in missing)}")
    unlabelled = set(found) - set(labels)
    if unlabelled:
        raise PostprocessError(f"{len(unlabelled)} result file(s) have no line in the label file: "
                               f"{_names(i + RESULT_SUFFIX for i in unlabelled)}")
    img_ids = sorted(labels)
    sizes = {img_id: os.path.getsize(found[img_id]) for img_id in img_ids}
    size = sizes[img_ids[0]]
    if size == 0 or size % 4:
        raise PostprocessError(f"{found[img_ids[0]]!r} holds {size} bytes, not float32 logits")
    wrong = [img_id for img_id in img_ids if sizes[img_id] != size]
    if wrong:
        raise PostprocessError(f"result files differ in size: {found[img_ids[0]]!r} holds {size} bytes, "
                               f"{found[wrong[0]]!r} {sizes[wrong[0]]} ({len(wrong)} file(s) differ)")
    logits = np.stack([np.fromfile(found[img_id], dtype=np.float32) for img_id in img_ids])
    targets = np.array([labels[img_id] for img_id in img_ids], dtype=np.int64)
    classes = logits.shape[1]
    bad = [img_id for img_id in img_ids if labels[img_id] >= classes]
    if bad:
        raise PostprocessError(f"label {labels[bad[0]]} of {bad[0]!r} is outside the {classes} classes of the "
                               f"result files ({len(bad)} such label(s)); do the label file and the model match?")
    return logits, targets, img_ids


def score_results(result_path, label_file):
    """(Top-1, Top-5, images, classes) of the result files, by the rule of ``src/metrics.py``."""
    labels = read_label_file(label_file)
    logits, targets, _ = read_results(result_path, labels)
    return topk_accuracy(logits, targets, 1), topk_accuracy(logits, targets, 5), len(targets), logits.shape[1]


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Top-1/Top-5 accuracy of the Ascend 310 result files.")
    parser.add_argument("--result_path", required=True, help="folder of <img_id>_0.bin logits")
    parser.add_argument("--label_file", required=True, help="file of img_id:label lines")
    parser.add_argument("--log_path", default="acc.log", help="where the accuracy line is written (acc.log)")
    return parser.parse_args(argv)


def main(argv=None):
    # 1. arguments -> 2. labels and results -> 3. accuracy, printed and written.
    args = _parse_args(argv)
    code, result = run_reporting_errors(score_results, args.result_path, args.label_file)
    if code:
        return code
    top1, top5, images, classes = result
    line = format_accuracy(top1, top5)
    print(f"{images} images, {classes} classes")
    print(line)
    try:
        with open(args.log_path, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as exc:
        return report_error(f"cannot write {args.log_path!r}: {exc.strerror or exc}; pass another --log_path",
                            EXIT_USAGE)
    print(f"wrote {os.path.abspath(args.log_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
