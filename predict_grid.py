"""A picture of what the trained network sees: validation images with predicted and true class.

    python predict_grid.py --config_path transfer_config.yaml [--ckpt_path CKPT] [--dataset_path ROOT]
                           [--output grid.png] [--num_images 16] [--columns 0] [--thumb_size 160]
                           [--key value ...]

Steps: options and config -> checkpoint (default with is_transfer: the transfer run's best,
``save_ckpt_path/shufflenetv1_transfer_best.ckpt``, as eval.py; its network as it records)
-> validation files (the validation split of ``dataset_path`` with is_transfer, or every
image of ``eval_dataset_path``), taken class by class in turn -> the network on the
evaluation transforms -> a grid drawn with Pillow (PNG, or JPEG for an --output ending in
.jpg/.jpeg): each image with "pred: <class> <probability>" and "true: <class>"; a wrong
prediction gets a red frame and red text, a right one green. The header says how many
are right.

Every config key can be given as ``--key value`` (command line > YAML > defaults).
"""
import argparse
import math
import os
import sys

import mindspore as ms
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from src.checkpoint_utils import adopt_checkpoint_config, checkpoint_to_evaluate, load_pretrained
from src.dataset import DatasetError, check_complete_image, eval_transforms, validation_files
from src.model_factory import create_network
from src.model_utils.config import get_config
from src.model_utils.device_adapter import init_context
from src.model_utils.errors import EXIT_USAGE, UsageError, report_error, run_reporting_errors

__all__ = ["pick_images", "predict_files", "draw_grid", "grid_size", "main", "PAD", "TEXT_HEIGHT", "HEADER_HEIGHT",
           "IMAGE_FORMATS"]

PAD = 6            # space around each cell (the frame of a cell is drawn inside it)
FRAME = 4          # width of the green / red frame
TEXT_HEIGHT = 36   # two lines of text under each image
HEADER_HEIGHT = 30
RIGHT, WRONG = (30, 150, 60), (215, 25, 30)
# --output's extension -> the format written.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def grid_size(num_images, columns, thumb_size):
    """(width, height) in pixels of the grid of ``num_images`` images."""
    rows = math.ceil(num_images / columns)
    cell_w, cell_h = thumb_size + 2 * PAD, thumb_size + TEXT_HEIGHT + 2 * PAD
    return columns * cell_w, HEADER_HEIGHT + rows * cell_h


def pick_images(files, num_images):
    """Up to ``num_images`` of ``files`` [(path, label)], one class after the other, so each class shows."""
    by_label = {}
    for path, label in files:
        by_label.setdefault(label, []).append((path, label))
    picked, queues = [], [list(v) for _, v in sorted(by_label.items())]
    while len(picked) < num_images and any(queues):
        for queue in queues:
            if queue and len(picked) < num_images:
                picked.append(queue.pop(0))
    return picked


def _read(path):
    with open(path, "rb") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8)
    try:
        return check_complete_image(raw)
    except ValueError as exc:
        raise DatasetError(f"cannot use image {path!r}: {exc}; remove or replace it") from exc


def predict_files(net, paths, image_size, input_format="rgb_normalized", batch_size=32):
    """Softmax probabilities (N, num_classes) of ``net`` on the images at ``paths`` (eval transforms)."""
    ops = eval_transforms(image_size, input_format)
    arrays = []
    for path in paths:
        image = _read(path)
        try:
            for op in ops:
                image = op(image)
        except RuntimeError as exc:
            raise DatasetError(f"cannot decode image {path!r}: the file is corrupt or not an image") from exc
        arrays.append(image)
    net.set_train(False)
    probs = []
    for start in range(0, len(arrays), batch_size):
        logits = net(ms.Tensor(np.stack(arrays[start:start + batch_size]).astype(np.float32))).asnumpy()
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs.append(exp / exp.sum(axis=1, keepdims=True))
    return np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


def _thumbnail(path, size):
    """The image with its short side resized to ``size`` and centre-cropped (the eval view)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = size / min(img.size)
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                         Image.BILINEAR)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        return img.crop((left, top, left + size, top + size))


def _fit(draw, text, font, width):
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def draw_grid(items, class_names, output, columns=0, thumb_size=160, title=""):
    """Write the PNG grid and return its path.

    Args:
        items (list): (path, true label, predicted label, probability of the prediction).
        class_names (list): label -> name.
        output (str): PNG file to write (its folder is created).
        columns (int): images per row; 0 = about square.
        thumb_size (int): side of each image in pixels.
        title (str): header text before the "N/M right" count.
    """
    if not items:
        raise ValueError("no images to draw")
    columns = columns or math.ceil(math.sqrt(len(items)))
    columns = min(columns, len(items))
    width, height = grid_size(len(items), columns, thumb_size)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font, header_font = _font(12), _font(15)
    right = sum(1 for _, true, pred, _ in items if true == pred)
    draw.text((PAD, 7), _fit(draw, f"{title}{right}/{len(items)} right (red frame: wrong)", header_font,
                             width - 2 * PAD), fill="black", font=header_font)
    cell_w, cell_h = thumb_size + 2 * PAD, thumb_size + TEXT_HEIGHT + 2 * PAD
    for i, (path, true, pred, prob) in enumerate(items):
        x, y = (i % columns) * cell_w, HEADER_HEIGHT + (i // columns) * cell_h
        colour = RIGHT if pred == true else WRONG
        draw.rectangle([x + PAD - FRAME, y + PAD - FRAME, x + PAD + thumb_size + FRAME - 1,
                        y + PAD + thumb_size + FRAME - 1], fill=colour)
        canvas.paste(_thumbnail(path, thumb_size), (x + PAD, y + PAD))
        text_y = y + PAD + thumb_size + FRAME + 2
        suffix = f" {prob:.0%}"
        pred_text = _fit(draw, f"pred: {class_names[pred]}", font, thumb_size - draw.textlength(suffix, font=font))
        pred_text += suffix
        draw.text((x + PAD, text_y), pred_text, fill=colour, font=font)
        draw.text((x + PAD, text_y + 15), _fit(draw, f"true: {class_names[true]}", font, thumb_size),
                  fill="black", font=font)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    canvas.save(output, format=IMAGE_FORMATS[os.path.splitext(output)[1].lower()])
    return output


def parse_args(argv):
    """(picture options, the remaining config arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False, allow_abbrev=False)
    parser.add_argument("--output", default="predictions.png", help="PNG file to write")
    parser.add_argument("--num_images", type=int, default=16, help="images in the grid")
    parser.add_argument("--columns", type=int, default=0, help="images per row (0: about square)")
    parser.add_argument("--thumb_size", type=int, default=160, help="side of each image in pixels")
    options, rest = parser.parse_known_args(argv)
    for key in ("num_images", "thumb_size"):
        if getattr(options, key) < 1:
            raise UsageError(f"--{key} {getattr(options, key)} must be at least 1")
    if options.columns < 0:
        raise UsageError(f"--columns {options.columns} must be 0 (automatic) or more")
    if os.path.splitext(options.output)[1].lower() not in IMAGE_FORMATS:
        raise UsageError(f"--output {options.output}: write a .png or a .jpg file (the format follows the "
                         "extension)")
    return options, rest


def run(options, cfg):
    """Predict and draw; returns (output path, number right, number drawn)."""
    init_context(cfg, distributed=False)
    ckpt = checkpoint_to_evaluate(cfg)
    adopt_checkpoint_config(cfg, ckpt, "predict")
    files, names = validation_files(cfg)
    if len(names) != cfg.num_classes:
        raise DatasetError(f"the data has {len(names)} classes ({', '.join(names)}) but the network of {ckpt} has "
                           f"{cfg.num_classes} outputs: draw the validation images of the classes it was trained on")
    picked = pick_images(files, options.num_images)
    net = create_network(cfg)
    load_pretrained(net, ckpt)
    probs = predict_files(net, [path for path, _ in picked], cfg.image_size, cfg.input_format)
    preds = probs.argmax(axis=1)
    items = [(path, label, int(pred), float(prob[pred])) for (path, label), pred, prob in zip(picked, preds, probs)]
    title = f"ShuffleNetV1 {cfg.model_size} g{cfg.group}, {os.path.basename(ckpt)}: "
    try:
        draw_grid(items, names, options.output, options.columns, options.thumb_size, title)
    except OSError as exc:
        raise ValueError(f"cannot write {options.output!r}: {exc.strerror or exc}") from exc
    right = sum(1 for _, true, pred, _ in items if true == pred)
    print(f"wrote {os.path.abspath(options.output)}: {len(items)} validation images, {right} predicted right",
          flush=True)
    return options.output, right, len(items)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__)
    try:
        options, rest = parse_args(argv)
    except UsageError as exc:
        return report_error(exc, EXIT_USAGE)
    cfg = get_config(rest, purpose="predict", prog="predict_grid.py")
    code, _ = run_reporting_errors(run, options, cfg)
    return code


if __name__ == "__main__":
    sys.exit(main())
