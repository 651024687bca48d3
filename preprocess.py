"""Write the input files of the Ascend 310 program:

    python preprocess.py --data_path ROOT --output_path DIR [--image_size 224] [--input_format rgb_normalized]

Every image of the ImageNet-style folder ROOT/<class>/<image> goes through the evaluation
transforms of ``src/dataset.py`` (decode, resize, centre crop, normalise, HWC->CHW), the
ones eval.py and infer_onnx.py use, and is written as ``DIR/<img_id>.bin`` (float32,
3 x image_size x image_size, img_id = file name without extension, as in the label file of
``tools/make_label_file.py``). ``DIR/preprocess.json`` records what the files are; a folder
holding .bin files of another data set or other settings is refused, so nothing of it is
overwritten.
"""
import argparse
import json
import os
import sys

import numpy as np

from src.dataset import INPUT_FORMATS, check_complete_image, eval_transforms, list_images
from src.model_utils.errors import UsageError, run_reporting_errors

__all__ = ["PreprocessError", "MANIFEST", "preprocess_image", "preprocess_folder", "main"]

MANIFEST = "preprocess.json"


class PreprocessError(ValueError):
    """An image that cannot be preprocessed; the message names it."""


def preprocess_image(path, transforms):
    """One image file through ``transforms`` (eager): float32 array (3, H, W)."""
    try:
        image = check_complete_image(np.fromfile(path, dtype=np.uint8))
        for transform in transforms:
            image = transform(image)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PreprocessError(f"cannot preprocess {path!r}: the file is corrupt, truncated or not an image "
                              f"({first})") from exc
    return np.ascontiguousarray(image, dtype=np.float32)


def _check_output_folder(output_path, spec, wanted):
    """Refuse a folder whose .bin files are of another data set or other settings (see the module)."""
    existing = sorted(e.name for e in os.scandir(output_path) if e.name.endswith(".bin"))
    if not existing:
        return
    manifest = os.path.join(output_path, MANIFEST)
    recorded = None
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as fh:
            try:
                recorded = json.load(fh)
            except json.JSONDecodeError:
                recorded = None
    if recorded != spec:
        what = ("files of an unknown data set (no preprocess.json)" if recorded is None else
                f"the files of {recorded.get('data_path')!r} at image_size {recorded.get('image_size')}, "
                f"{recorded.get('input_format')}")
        raise UsageError(f"output_path={output_path!r} already holds {len(existing)} .bin file(s): {what}; "
                         "writing there would replace or mix them: use an empty folder")
    stale = [name for name in existing if name not in wanted]
    if stale:
        raise UsageError(f"output_path={output_path!r} holds {len(stale)} .bin file(s) of images no longer in "
                         f"the data (e.g. {stale[0]}), which the inference program would also run; use an empty "
                         "folder")


def preprocess_folder(data_path, output_path, image_size=224, input_format="rgb_normalized", log_every=500):
    """Write ``output_path/<img_id>.bin`` for every image of ``data_path``; returns the image count.

    Raises:
        UsageError: a bad argument, or an output folder holding other .bin files.
        DatasetError: a folder whose images cannot be read or named (``src.dataset.list_images``).
        PreprocessError: a bad image.
    """
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"input_format={input_format!r} is not supported; choose one of {list(INPUT_FORMATS)}")
    if image_size < 32:
        raise UsageError(f"image_size={image_size} must be >= 32")
    if not os.path.isdir(data_path):
        raise UsageError(f"data_path={data_path!r} is not a directory; expected ImageNet-style ROOT/<class>/<image>")
    images = list_images(data_path)
    os.makedirs(output_path, exist_ok=True)
    spec = {"data_path": os.path.abspath(data_path), "image_size": image_size, "input_format": input_format}
    _check_output_folder(output_path, spec, {img_id + ".bin" for img_id, _, _ in images})
    with open(os.path.join(output_path, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    transforms = eval_transforms(image_size, input_format)
    for index, (img_id, path, _) in enumerate(images, 1):
        array = preprocess_image(path, transforms)
        array.tofile(os.path.join(output_path, img_id + ".bin"))
        if index % log_every == 0 or index == len(images):
            print(f"preprocessed {index}/{len(images)} images", flush=True)
    return len(images)


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Write preprocessed float32 CHW .bin files for ascend310_infer.")
    parser.add_argument("--data_path", required=True, help="ImageNet-style folder ROOT/<class>/<image>")
    parser.add_argument("--output_path", required=True, help="folder receiving <img_id>.bin")
    parser.add_argument("--image_size", type=int, default=224, help="network input size (224)")
    parser.add_argument("--input_format", default="rgb_normalized", choices=INPUT_FORMATS,
                        help="rgb_normalized (model zoo) or bgr_255 (converted Megvii weights)")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    code, count = run_reporting_errors(preprocess_folder, args.data_path, args.output_path, args.image_size,
                                       args.input_format)
    if code:
        return code
    print(f"wrote {count} input files (float32, 3x{args.image_size}x{args.image_size}) to "
          f"{os.path.abspath(args.output_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
