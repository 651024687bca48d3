"""Data pipeline: ImageNet-style folders (ROOT/<class>/<image>) through ``mindspore.dataset``.

Labels come from the sorted class-folder names, starting at 0 (as the original
model zoo). Training uses random-resized-crop, flip and colour jitter; evaluation
resizes the short side to 239 * image_size / 224, centre-crops and scores every
image (the last partial batch is kept).
"""
import os
import re

import mindspore as ms
import mindspore.dataset as ds
import mindspore.dataset.vision as vision

__all__ = ["create_dataset", "class_names", "count_images", "train_transforms", "eval_transforms",
           "DatasetError", "IMG_EXTENSIONS", "check_num_classes", "check_complete_image", "INPUT_FORMATS",
           "dataset_error_message", "default_num_workers", "eval_resize"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp",
                  ".JPG", ".JPEG", ".PNG", ".BMP", ".TIF", ".TIFF", ".WEBP")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# rgb_normalized: RGB with ImageNet mean/std (model zoo); bgr_255: BGR in 0-255 with no
# normalisation (the input Megvii's PyTorch weights were trained on).
INPUT_FORMATS = ("rgb_normalized", "bgr_255")


class DatasetError(ValueError):
    """A data set folder that cannot be used; the message names the path."""


def class_names(dataset_path):
    """Sorted class-folder names of an ImageNet-style folder (label i = i-th name).

    Raises:
        DatasetError: the folder is missing, holds no class folders, or a class folder
            holds no images.
    """
    if not dataset_path:
        raise DatasetError("no data set folder given; pass the path of an ImageNet-style folder "
                           "(ROOT/<class>/<image>)")
    if not os.path.isdir(dataset_path):
        raise DatasetError(f"data set folder {dataset_path!r} does not exist or is not a directory")
    names = sorted(e.name for e in os.scandir(dataset_path) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DatasetError(f"data set folder {dataset_path!r} holds no class folders; expected "
                           f"{os.path.join(dataset_path, '<class>', '<image>')}")
    return names


def check_num_classes(names, num_classes, dataset_path):
    """Compare the class folders of ``dataset_path`` with the network's ``num_classes``.

    More folders than outputs cannot be trained or scored (labels beyond the classifier):
    a ``DatasetError``. Fewer is allowed (e.g. a subset) but printed, since label i is the
    i-th sorted folder name and so must mean the same class as output i.
    """
    if len(names) > num_classes:
        raise DatasetError(f"{dataset_path!r} has {len(names)} class folders ({_preview(names)}) but num_classes="
                           f"{num_classes}; pass --num_classes {len(names)}")
    if len(names) < num_classes:
        print(f"note: {dataset_path!r} has {len(names)} class folders, the network {num_classes} outputs; label i is "
              f"the i-th sorted folder ({_preview(names)})", flush=True)


def _preview(names, count=5):
    return ", ".join(names[:count]) + (f", ... ({len(names) - count} more)" if len(names) > count else "")


def count_images(dataset_path, names=None):
    """Number of images per class folder; a class folder with none is an error naming it."""
    names = class_names(dataset_path) if names is None else names
    counts = {}
    for name in names:
        folder = os.path.join(dataset_path, name)
        counts[name] = sum(1 for e in os.scandir(folder) if e.is_file() and e.name.endswith(IMG_EXTENSIONS))
        if counts[name] == 0:
            raise DatasetError(f"class folder {folder!r} holds no images (looked for "
                               f"{', '.join(IMG_EXTENSIONS[:7])})")
    return counts


def _check_format(input_format):
    if input_format not in INPUT_FORMATS:
        raise DatasetError(f"input_format={input_format!r} is not supported; choose one of {list(INPUT_FORMATS)}")


def _to_tensor_ops(input_format):
    if input_format == "bgr_255":
        return [vision.ConvertColor(vision.ConvertMode.COLOR_RGB2BGR),
                vision.Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), vision.HWC2CHW()]
    return [vision.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), vision.HWC2CHW()]


def train_transforms(image_size, input_format="rgb_normalized"):
    """Decode + random-resized-crop (scale 0.08-1), flip, colour jitter 0.4, normalise, HWC->CHW."""
    _check_format(input_format)
    return [vision.RandomCropDecodeResize(image_size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
            vision.RandomHorizontalFlip(prob=0.5),
            vision.RandomColorAdjust(brightness=0.4, contrast=0.4, saturation=0.4),
            *_to_tensor_ops(input_format)]


def eval_resize(image_size):
    """Short side before the centre crop: 239 px at 224 (the original recipe), scaled with image_size."""
    return int(round(239 * image_size / 224))


def eval_transforms(image_size, input_format="rgb_normalized"):
    """Decode, resize the short side to ``eval_resize(image_size)``, centre-crop, normalise, HWC->CHW."""
    _check_format(input_format)
    return [vision.Decode(), vision.Resize(eval_resize(image_size)), vision.CenterCrop(image_size),
            *_to_tensor_ops(input_format)]


# File signatures of the formats MindSpore's Decode reads. (.webp is in IMG_EXTENSIONS so that such
# files are named with the reason, not skipped without a word.)
_SIGNATURES = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")


def check_complete_image(raw):
    """Reject a file that is not an image, or a JPEG or PNG whose end is missing (a cut-off download or copy).

    Runs in the pipeline before the decoder, so MindSpore names the file when it fails (its
    own Decode does not). A file with no JPEG, PNG, BMP or TIFF signature is refused, and
    so is WebP, which the decoder cannot read. MindSpore's decoder fills the missing part
    of a truncated JPEG with grey instead of failing, so the file's own end marker is
    checked on the bytes already in memory: JPEG ends with EOI (FF D9), PNG with its IEND chunk.
    """
    head = raw[:12].tobytes()
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        raise ValueError("a WebP image, which MindSpore's decoder does not read; convert it to JPEG or PNG")
    if not head.startswith(_SIGNATURES):
        raise ValueError(f"not an image: the file starts with {head[:8]!r}, no JPEG/PNG/BMP/TIFF signature")
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in raw[-1024:].tobytes():
        raise ValueError("truncated JPEG: no end-of-image marker")
    if head[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in raw[-32:].tobytes():
        raise ValueError("truncated PNG: no IEND chunk")
    return raw


def default_num_workers(num_shards_on_machine=1):
    """Data workers per process: the machine's cores shared by the local processes, 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 1) // max(1, num_shards_on_machine)))


def create_dataset(dataset_path, do_train, batch_size=32, image_size=224, num_parallel_workers=0,
                   num_shards=1, shard_id=0, input_format="rgb_normalized", seed=1,
                   drop_remainder=None, repeat_num=1):
    """Batched dataset of an ImageNet-style folder, columns ``image`` (float32 CHW) and ``label`` (int32).

    Args:
        dataset_path (str): ROOT of ROOT/<class>/<image>.
        do_train (bool): training transforms and shuffling, or evaluation transforms in file order.
        batch_size (int): images per batch.
        image_size (int): side of the square network input.
        num_parallel_workers (int): data workers; 0 = ``default_num_workers``.
        num_shards, shard_id (int): data-parallel sharding (each rank sees a disjoint part).
        input_format (str): one of ``INPUT_FORMATS``.
        seed (int): seed of the shuffling and random augmentation.
        drop_remainder (bool): drop the last partial batch; default True for training,
            False for evaluation (every image is scored).
        repeat_num (int): repeats of the data set.

    Raises:
        DatasetError: bad folder (missing, empty, a class without images) or arguments.
    """
    names = class_names(dataset_path)
    count_images(dataset_path, names)
    _check_format(input_format)
    for key, value, low in (("batch_size", batch_size, 1), ("image_size", image_size, 32),
                            ("num_shards", num_shards, 1)):
        if not isinstance(value, int) or value < low:
            raise DatasetError(f"{key}={value!r} must be an integer >= {low}")
    if not 0 <= shard_id < num_shards:
        raise DatasetError(f"shard_id={shard_id} must be in [0, {num_shards})")
    cores = os.cpu_count() or 1
    workers = num_parallel_workers or default_num_workers()
    if workers > cores:
        raise DatasetError(f"num_parallel_workers={workers} exceeds this machine's {cores} CPU cores; "
                           f"use at most {cores} (or 0 for automatic)")
    if drop_remainder is None:
        drop_remainder = do_train
    ds.config.set_seed(seed)
    data = ds.ImageFolderDataset(dataset_path, num_parallel_workers=workers, shuffle=do_train,
                                 extensions=list(IMG_EXTENSIONS),
                                 class_indexing={name: i for i, name in enumerate(names)},
                                 num_shards=num_shards if num_shards > 1 else None,
                                 shard_id=shard_id if num_shards > 1 else None)
    ops = [check_complete_image] + (train_transforms(image_size, input_format) if do_train
                                    else eval_transforms(image_size, input_format))
    data = data.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label",
                    num_parallel_workers=workers)
    data = data.batch(batch_size, drop_remainder=drop_remainder)
    if repeat_num > 1:
        data = data.repeat(repeat_num)
    return data


_BAD_FILE = re.compile(r"The corresponding data file is: (.+?)\.\s")
_CAUSE = re.compile(r"^(?:ValueError|RuntimeError): (?!Traceback)(.+)$", re.MULTILINE)


def dataset_error_message(exc):
    """A one-line message for a data-pipeline failure, naming the file when MindSpore says which.

    Returns None when ``exc`` is not a data-pipeline error.
    """
    text = str(exc)
    match = _BAD_FILE.search(text)
    if match:
        cause = _CAUSE.search(text)
        detail = f" ({cause.group(1).strip()})" if cause else ""
        return (f"cannot decode image {match.group(1)!r}: the file is corrupt, truncated or not an image{detail}; "
                "remove or replace it and run again")
    if "dataset pipeline" in text.lower():
        detail = [line.strip() for line in text.splitlines() if line.strip().startswith("[ERROR]")]
        return "the data pipeline failed: " + (detail[0] if detail else text.strip().splitlines()[0])
    return None
