"""Write the label file of an ImageNet-style folder for postprocess.py.

Usage:
    python tools/make_label_file.py --data_path ROOT --output labels.txt

ROOT/<class>/<image>: one line ``img_id:label`` per image, img_id being the file name
without its extension and label the index of its class folder among the sorted class
folders, from 0 (the labels of ``src/dataset.py``, which trained the network). Images are
the files ``src/dataset.py`` reads (``src.dataset.list_images``: same extensions, class by
class in name order, each img_id unique); preprocess.py names its input files by the same img_ids.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as `python tools/make_label_file.py`: make `src` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.dataset import list_images  # noqa: E402
from src.model_utils.errors import UsageError, run_reporting_errors  # noqa: E402
from src.model_utils.files import replace_when_done  # noqa: E402

__all__ = ["write_label_file", "main"]


def write_label_file(data_path, output):
    """Write ``output`` (one ``img_id:label`` line per image); returns (images, classes)."""
    if not os.path.isdir(data_path):
        raise UsageError(f"data_path={data_path!r} is not a directory; expected ImageNet-style ROOT/<class>/<image>")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {output!r}: the folder {folder!r} does not exist")
    images = list_images(data_path)
    with replace_when_done(output, f"{output}.partial-{os.getpid()}") as temp:
        with open(temp, "w", encoding="utf-8") as fh:
            fh.writelines(f"{img_id}:{label}\n" for img_id, _, label in images)
    return len(images), len({label for _, _, label in images})


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Write img_id:label lines for an ImageNet-style folder.")
    parser.add_argument("--data_path", required=True, help="ImageNet-style folder ROOT/<class>/<image>")
    parser.add_argument("--output", required=True, help="label file to write")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    code, result = run_reporting_errors(write_label_file, args.data_path, args.output)
    if code:
        return code
    count, classes = result
    print(f"wrote {os.path.abspath(args.output)}: {count} images, {classes} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
