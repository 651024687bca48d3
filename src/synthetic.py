"""A small image-classification data set made locally (no download), in the ImageNet layout.

Classes are textures (horizontal / vertical stripes, checkerboard, dots, diagonal
stripes, rings) in random colours, periods and phases with noise, so a network has
to learn the pattern, not the colour, and random crops and flips keep the label. Used by the demo (``demo.py``) and by the tests.
"""
import json
import os

import numpy as np
from PIL import Image

__all__ = ["SHAPES", "make_shapes_dataset", "make_photo_folder"]

SHAPES = ("hstripes", "vstripes", "checker", "dots", "diagonal", "rings")


def _pattern(shape, size, rng):
    """A boolean mask of the class's texture over the whole image (random period and phase),
    so random crops and flips keep the label."""
    period = rng.uniform(5.0, 10.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + rng.uniform(0, period, 2)[:, None, None]
    if shape == "hstripes":
        return (yy % period) < period / 2
    if shape == "vstripes":
        return (xx % period) < period / 2
    if shape == "checker":
        return ((yy // (period / 2)) + (xx // (period / 2))) % 2 == 0
    if shape == "dots":
        return ((yy % period - period / 2) ** 2 + (xx % period - period / 2) ** 2) < (period / 3.2) ** 2
    if shape == "diagonal":
        direction = rng.choice([-1.0, 1.0])
        return ((yy + direction * xx) % (period * 1.2)) < period * 0.6
    cy, cx = rng.uniform(0, size, 2)  # rings
    return (np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) % period) < period / 2


def _image(shape, size, rng):
    background = rng.randint(0, 256, 3).astype(np.float64)
    colour = (background + rng.choice([-1, 1], 3) * rng.randint(80, 150, 3)) % 256
    mask = _pattern(shape, size, rng)[..., None]
    pixels = np.where(mask, colour, background) + rng.normal(0, 14, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_shapes_dataset(root, num_classes=4, train_per_class=100, val_per_class=25, image_size=64, seed=0):
    """Write ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``; reuse them if already there.

    Args:
        root (str): output folder.
        num_classes (int): 2 to 6 classes, taken from ``SHAPES`` in order.
        train_per_class, val_per_class (int): images per class and split.
        image_size (int): side of the square images.
        seed (int): random seed; the same arguments give the same images.

    Returns:
        (train_dir, val_dir)
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes={num_classes} must be between 2 and {len(SHAPES)}")
    spec = {"num_classes": num_classes, "train_per_class": train_per_class, "val_per_class": val_per_class,
            "image_size": image_size, "seed": seed, "version": 2}
    stamp = os.path.join(root, "dataset.json")
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as fh:
            if json.load(fh) == spec:
                return train_dir, val_dir
    rng = np.random.RandomState(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for shape in SHAPES[:num_classes]:
            folder = os.path.join(root, split, shape)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                _image(shape, image_size, rng).save(os.path.join(folder, f"{shape}_{i:04d}.jpg"), quality=92)
    with open(stamp, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    return train_dir, val_dir


def _photo(width, height, rng):
    """A photo-sized picture: smooth colour gradients, a wavy texture and sensor-like noise (a JPEG of it
    is about as large, and as slow to decode, as a photo of that size)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = rng.uniform(0, 255, 3) + (xx / width)[..., None] * rng.uniform(-120, 120, 3) \
        + (yy / height)[..., None] * rng.uniform(-120, 120, 3)
    period = rng.uniform(6, 40)
    pixels = pixels + 40 * (np.sin(xx / period + rng.uniform(0, 6)) * np.cos(yy / (1.3 * period)))[..., None]
    pixels = pixels + rng.normal(0, 18, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_photo_folder(root, num_classes=4, per_class=64, size=(500, 375), seed=0):
    """Write ``root/<class>/*.jpg`` of photo-sized JPEGs (ImageNet's typical 500x375, quality 90), for timing
    the data pipeline on real-size images; reuse them if already there. Returns ``root``."""
    spec = {"num_classes": num_classes, "per_class": per_class, "size": list(size), "seed": seed, "version": 1}
    stamp = os.path.join(root, "photos.json")
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as fh:
            if json.load(fh) == spec:
                return root
    rng = np.random.RandomState(seed)
    for label in range(num_classes):
        folder = os.path.join(root, f"class_{label}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            _photo(size[0], size[1], rng).save(os.path.join(folder, f"photo_{i:04d}.jpg"), quality=90)
    with open(stamp, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    return root
