"""Write the label file of an ImageNet-style folder for postprocess.py.

Usage:
    python tools/make_label_file.py --data_path ROOT --output labels.txt

ROOT/<class>/<image>: one line ``img_id:label`` per image, img_id being the file name
without its extension and label the index of its class folder among the sorted class
folders, from 0 (the labels of ``src/dataset.py``, which trained the network). Images are
the files ``src/dataset.py`` reads (same extensions), listed class by class in name order;
preprocess.py names its input files by the same img_ids.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as `python tools/make_label_file.py`: make `src` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.dataset import IMG_EXTENSIONS, DatasetError, class_names, count_images  # noqa: E402

__all__ = ["LabelFileError", "list_images", "write_label_file", "main"]


class LabelFileError(ValueError):
    """A folder whose images cannot be named uniquely, or a label file that cannot be written."""


def list_images(data_path):
    """Every image of an ImageNet-style folder as ``(img_id, path, label)``, class by class.

    Raises:
        DatasetError: missing folder, no class folders, a class folder without images.
        LabelFileError: two images with the same img_id (file name without extension), which
            the result files ``<img_id>_0.bin`` could not tell apart.
    """
    names = class_names(data_path)
    count_images(data_path, names)
    images, seen = [], {}
    for label, name in enumerate(names):
        folder = os.path.join(data_path, name)
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.endswith(IMG_EXTENSIONS))
        for file_name in files:
            path = os.path.join(folder, file_name)
            img_id = os.path.splitext(file_name)[0]
            if img_id in seen:
                raise LabelFileError(f"{seen[img_id]!r} and {path!r} have the same img_id {img_id!r} (file name "
                                     f"without extension); rename one so that every image has its own result file")
            if ":" in img_id or not img_id.strip():
                raise LabelFileError(f"{path!r}: an img_id cannot be empty or contain ':' (the label file's "
                                     f"separator); rename the file")
            seen[img_id] = path
            images.append((img_id, path, label))
    return images


def write_label_file(data_path, output):
    """Write ``output`` (one ``img_id:label`` line per image); returns (images, classes)."""
    images = list_images(data_path)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise LabelFileError(f"cannot write {output!r}: the folder {folder!r} does not exist")
    temp = f"{output}.partial-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as fh:
        fh.writelines(f"{img_id}:{label}\n" for img_id, _, label in images)
    os.replace(temp, output)
    return len(images), len({label for _, _, label in images})


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Write img_id:label lines for an ImageNet-style folder.")
    parser.add_argument("--data_path", required=True, help="ImageNet-style folder ROOT/<class>/<image>")
    parser.add_argument("--output", required=True, help="label file to write")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    try:
        count, classes = write_label_file(args.data_path, args.output)
    except (DatasetError, LabelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {os.path.abspath(args.output)}: {count} images, {classes} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
