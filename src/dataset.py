"""Data pipeline: ImageNet-style folders (ROOT/<class>/<image>) through ``mindspore.dataset``.

Labels come from the sorted class-folder names, starting at 0 (as the original
model zoo). Training uses random-resized-crop, flip and colour jitter; evaluation
resizes the short side to 239 * image_size / 224, centre-crops and scores every
image (the last partial batch is kept).

Transfer learning (``is_transfer``) reads one flower_photos-style folder split per class,
80% training / 20% validation by default, reproducibly: a file's place in its class is
set by a hash of the seed, the class and its file name, so the same seed gives the same
split on every machine and Python/numpy version, and adding photos does not move the
old ones around at random. No image is in both parts (:func:`split_files`).

The entry points build their data with :func:`create_train_eval_datasets` and
:func:`create_eval_dataset` from the (validated) config.
"""
import hashlib
import math
import os

import mindspore as ms
import mindspore.dataset as ds
import mindspore.dataset.vision as vision

__all__ = ["create_dataset", "create_flower_dataset", "create_train_eval_datasets", "create_eval_dataset",
           "class_names", "count_images", "list_class_files", "list_images", "split_files", "split_indices",
           "validation_files", "train_transforms", "eval_transforms", "DatasetError", "IMG_EXTENSIONS",
           "check_num_classes", "check_complete_image", "INPUT_FORMATS", "default_num_workers", "eval_resize"]

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


def check_num_classes(names, num_classes, dataset_path, trained=False):
    """Compare the class folders of ``dataset_path`` with the network's ``num_classes``.

    More folders than outputs cannot be trained or scored (labels beyond the classifier):
    a ``DatasetError``. Fewer is allowed (e.g. a subset) but printed, since label i is the
    i-th sorted folder name and so must mean the same class as output i. ``trained``: the
    network is a trained one (evaluation), whose class count is the checkpoint's.
    """
    if len(names) > num_classes:
        fix = (f"the checkpoint's network has {num_classes} outputs: evaluate it on a folder of the classes it "
               "was trained on" if trained else f"pass --num_classes {len(names)}")
        raise DatasetError(f"{dataset_path!r} has {len(names)} class folders ({_preview(names)}) but num_classes="
                           f"{num_classes}; {fix}")
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


def _to_tensor_ops(input_format):
    if input_format not in INPUT_FORMATS:
        raise DatasetError(f"input_format={input_format!r} is not supported; choose one of {list(INPUT_FORMATS)}")
    if input_format == "bgr_255":
        return [vision.ConvertColor(vision.ConvertMode.COLOR_RGB2BGR),
                vision.Normalize(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), vision.HWC2CHW()]
    return [vision.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), vision.HWC2CHW()]


def train_transforms(image_size, input_format="rgb_normalized"):
    """Decode + random-resized-crop (scale 0.08-1), flip, colour jitter 0.4, normalise, HWC->CHW."""
    return [vision.RandomCropDecodeResize(image_size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
            vision.RandomHorizontalFlip(prob=0.5),
            vision.RandomColorAdjust(brightness=0.4, contrast=0.4, saturation=0.4),
            *_to_tensor_ops(input_format)]


def eval_resize(image_size):
    """Short side before the centre crop: 239 px at 224 (the original recipe), scaled with image_size."""
    return int(round(239 * image_size / 224))


def eval_transforms(image_size, input_format="rgb_normalized"):
    """Decode, resize the short side to ``eval_resize(image_size)``, centre-crop, normalise, HWC->CHW."""
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
                   num_shards=1, shard_id=0, input_format="rgb_normalized", seed=1, drop_remainder=None):
    """Batched dataset of an ImageNet-style folder, columns ``image`` (float32 CHW) and ``label`` (int32).

    The values are those of a validated config (src/model_utils/config.py checks them).

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

    Raises:
        DatasetError: a folder that cannot be read (missing, empty, a class without images).
    """
    names = class_names(dataset_path)
    count_images(dataset_path, names)
    workers = num_parallel_workers or default_num_workers()
    if drop_remainder is None:
        drop_remainder = do_train
    ds.config.set_seed(seed)
    data = ds.ImageFolderDataset(dataset_path, num_parallel_workers=workers, shuffle=do_train,
                                 extensions=list(IMG_EXTENSIONS),
                                 class_indexing={name: i for i, name in enumerate(names)},
                                 num_shards=num_shards if num_shards > 1 else None,
                                 shard_id=shard_id if num_shards > 1 else None)
    transforms = train_transforms(image_size, input_format) if do_train else eval_transforms(image_size, input_format)
    return _batched(data, transforms, batch_size, drop_remainder, workers)


def _batched(data, transforms, batch_size, drop_remainder, workers):
    data = data.map(operations=[check_complete_image] + transforms, input_columns="image",
                    num_parallel_workers=workers)
    data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label",
                    num_parallel_workers=workers)
    return data.batch(batch_size, drop_remainder=drop_remainder)


# ----------------------------------------------------------------------------- transfer learning: one folder, split

def list_class_files(dataset_path):
    """(class names, {class: sorted file names}) of ``dataset_path/<class>/<image>``.

    The files are those ``ImageFolderDataset`` reads, in its order: the images directly in
    each class folder (extensions ``IMG_EXTENSIONS``), sorted by name.
    """
    names = class_names(dataset_path)
    files = {}
    for name in names:
        folder = os.path.join(dataset_path, name)
        files[name] = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.endswith(IMG_EXTENSIONS))
    return names, files


def _split_key(seed, class_name, file_name):
    return hashlib.sha256(f"{seed}/{class_name}/{file_name}".encode("utf-8", "surrogateescape")).hexdigest()


def _check_ratio(train_ratio):
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0 < train_ratio < 1:
        raise DatasetError(f"train_ratio={train_ratio!r} must be a number between 0 and 1 (exclusive), "
                           "e.g. 0.8 for 80% training / 20% validation")


def split_files(dataset_path, seed=1, train_ratio=0.8):
    """The split of ``dataset_path`` into training and validation files, per class.

    Each class keeps ``n * train_ratio`` images for training, rounded half up (at least one, and at
    least one left for validation).

    Args:
        dataset_path (str): ROOT of ROOT/<class>/<image>.
        seed (int): the same seed gives the same split.
        train_ratio (float): fraction of each class used for training.

    Returns:
        (train, val, class_names): ``train`` and ``val`` are lists of (path, label), sorted
        by path; label i is the i-th of the sorted class names.

    Raises:
        DatasetError: missing folder, no class folders, or a class with fewer than 2
            images (named), or a bad ``train_ratio``.
    """
    _check_ratio(train_ratio)
    names, files = list_class_files(dataset_path)
    too_few = {name: len(found) for name, found in files.items() if len(found) < 2}
    if too_few:
        listed = ", ".join(f"{os.path.join(dataset_path, name)!r} ({count} image{'s' * (count != 1)})"
                           for name, count in too_few.items())
        raise DatasetError(f"class folder(s) {listed} cannot be split into training and validation: each class "
                           f"needs at least 2 images (looked for {', '.join(IMG_EXTENSIONS[:7])}); add images or "
                           "remove the folder")
    train, val = [], []
    for label, name in enumerate(names):
        ranked = sorted(files[name], key=lambda f, n=name: _split_key(seed, n, f))
        n_train = min(max(math.floor(len(ranked) * train_ratio + 0.5), 1), len(ranked) - 1)
        train += [(os.path.join(dataset_path, name, f), label) for f in sorted(ranked[:n_train])]
        val += [(os.path.join(dataset_path, name, f), label) for f in sorted(ranked[n_train:])]
    return train, val, names


def split_indices(dataset_path, seed=1, train_ratio=0.8, num_shards=1, shard_id=0):
    """The split of :func:`split_files` as indices into ``ImageFolderDataset(dataset_path)``.

    ImageFolderDataset numbers the files class by class (label order), sorted by name within
    a class: the order of :func:`list_class_files` (tests/test_transfer.py checks this against
    MindSpore; the image count is checked here).

    Returns:
        (train indices of shard ``shard_id``, validation indices, class names). With
        ``num_shards`` > 1 the training indices are a seeded permutation cut into equal,
        disjoint parts (the same number of steps on every rank).
    """
    train, val, names = split_files(dataset_path, seed, train_ratio)
    _, files = list_class_files(dataset_path)
    index, offset = {}, 0
    for name in names:
        for i, file_name in enumerate(files[name]):
            index[os.path.join(dataset_path, name, file_name)] = offset + i
        offset += len(files[name])
    engine_count = ds.ImageFolderDataset(dataset_path, extensions=list(IMG_EXTENSIONS),
                                         class_indexing={name: i for i, name in enumerate(names)}).get_dataset_size()
    if engine_count != offset:
        raise DatasetError(f"MindSpore's ImageFolderDataset sees {engine_count} images in {dataset_path!r}, the split "
                           f"{offset}; did the folder change while it was read?")
    train_idx = [index[path] for path, _ in train]
    val_idx = [index[path] for path, _ in val]
    if num_shards > 1:
        order = sorted(train_idx, key=lambda i: hashlib.sha256(f"{seed}/shard/{i}".encode()).hexdigest())
        per_shard = len(order) // num_shards
        train_idx = sorted(order[shard_id::num_shards][:per_shard])
    return train_idx, val_idx, names


def create_flower_dataset(dataset_path, batch_size=32, eval_batch_size=0, image_size=224, seed=1,
                          num_parallel_workers=0, input_format="rgb_normalized", num_shards=1, shard_id=0,
                          train_ratio=0.8):
    """Training and validation datasets of one folder of class sub-folders (see :func:`split_files`).

    Args:
        dataset_path (str): ROOT of ROOT/<class>/<image>, e.g. ``flower_photos``.
        batch_size (int): training images per batch (the last partial batch is dropped).
        eval_batch_size (int): validation images per batch (all scored); 0 = ``batch_size``.
        image_size (int): side of the square network input.
        seed (int): seed of the split, the shuffling and the random augmentation.
        num_parallel_workers (int): data workers; 0 = ``default_num_workers(num_shards)``.
        input_format (str): one of ``INPUT_FORMATS``.
        num_shards, shard_id (int): data-parallel training: each rank gets an equal, disjoint
            part of the training split (validation is not sharded).
        train_ratio (float): fraction of each class used for training.

    Returns:
        (train_ds, eval_ds, class_names): batched datasets with columns ``image`` (float32
        CHW) and ``label`` (int32), and the class names (label i = class_names[i]).

    Raises:
        DatasetError: bad folder (missing, no classes, a class with fewer than 2 images),
            or bad ``train_ratio``.
    """
    workers = num_parallel_workers or default_num_workers(num_shards)
    train_idx, val_idx, names = split_indices(dataset_path, seed, train_ratio, num_shards, shard_id)
    ds.config.set_seed(seed)
    index = {name: i for i, name in enumerate(names)}

    def folder(sampler):
        return ds.ImageFolderDataset(dataset_path, num_parallel_workers=workers, sampler=sampler,
                                     extensions=list(IMG_EXTENSIONS), class_indexing=index)
    train_ds = _batched(folder(ds.SubsetRandomSampler(train_idx)), train_transforms(image_size, input_format),
                        batch_size, True, workers)
    eval_ds = _batched(folder(ds.SubsetSampler(val_idx)), eval_transforms(image_size, input_format),
                       eval_batch_size or batch_size, False, workers)
    return train_ds, eval_ds, names


def list_images(data_path):
    """Every image of an ImageNet-style folder as ``(img_id, path, label)``, class by class, in name order.

    ``img_id`` is the file name without its extension: the name of the Ascend 310 program's
    input and result files and of the label file's lines.

    Raises:
        DatasetError: missing folder, no class folders, a class folder without images, or two
            images with the same img_id (whose result files could not be told apart).
    """
    names, files = list_class_files(data_path)
    images, seen = [], {}
    for label, name in enumerate(names):
        if not files[name]:
            raise DatasetError(f"class folder {os.path.join(data_path, name)!r} holds no images (looked for "
                               f"{', '.join(IMG_EXTENSIONS[:7])})")
        for file_name in files[name]:
            path = os.path.join(data_path, name, file_name)
            img_id = os.path.splitext(file_name)[0]
            if img_id in seen:
                raise DatasetError(f"{seen[img_id]!r} and {path!r} have the same img_id {img_id!r} (file name "
                                   f"without extension); rename one so that every image has its own result file")
            if ":" in img_id or not img_id.strip():
                raise DatasetError(f"{path!r}: an img_id cannot be empty or contain ':' (the label file's "
                                   f"separator); rename the file")
            seen[img_id] = path
            images.append((img_id, path, label))
    return images


# ----------------------------------------------------------------------------- from a config

def _workers(cfg, group_size=1):
    if cfg.num_parallel_workers or group_size == 1:
        return cfg.num_parallel_workers
    # the ranks on this machine share its cores (mpirun says how many are local; else all are assumed local)
    return default_num_workers(int(os.getenv("OMPI_COMM_WORLD_LOCAL_SIZE", str(group_size))))


def create_train_eval_datasets(cfg, rank=0, group_size=1):
    """(train, eval or None) datasets of a validated config: ImageNet-style folders, or with
    ``is_transfer`` the split of ``dataset_path``.

    Distributed, each rank trains on its own shard (1/group_size of the images; MindSpore pads the
    shards to equal length by repeating up to group_size - 1 images). Evaluation runs on rank 0 only.
    """
    workers = _workers(cfg, group_size)
    eval_batch = cfg.eval_batch_size or cfg.batch_size
    if cfg.is_transfer:
        train_ds, eval_ds, names = create_flower_dataset(
            cfg.dataset_path, batch_size=cfg.batch_size, eval_batch_size=eval_batch, image_size=cfg.image_size,
            seed=cfg.seed, num_parallel_workers=workers, input_format=cfg.input_format,
            num_shards=group_size, shard_id=rank)
        check_num_classes(names, cfg.num_classes, cfg.dataset_path)
        return train_ds, eval_ds
    check_num_classes(class_names(cfg.train_dataset_path), cfg.num_classes, cfg.train_dataset_path)
    train_ds = create_dataset(cfg.train_dataset_path, do_train=True, batch_size=cfg.batch_size,
                              image_size=cfg.image_size, num_parallel_workers=workers, num_shards=group_size,
                              shard_id=rank, input_format=cfg.input_format, seed=cfg.seed)
    eval_ds = None
    if cfg.eval_interval > 0 and cfg.eval_dataset_path:
        eval_ds = create_eval_dataset(cfg, workers)
    return train_ds, eval_ds


def create_eval_dataset(cfg, num_parallel_workers=None):
    """The validation data of a validated config: ``eval_dataset_path``, or the validation split of
    ``dataset_path`` with ``is_transfer``."""
    workers = cfg.num_parallel_workers if num_parallel_workers is None else num_parallel_workers
    batch = cfg.eval_batch_size or cfg.batch_size
    if cfg.is_transfer:
        _, eval_ds, names = create_flower_dataset(cfg.dataset_path, batch_size=cfg.batch_size, eval_batch_size=batch,
                                                  image_size=cfg.image_size, seed=cfg.seed,
                                                  num_parallel_workers=workers, input_format=cfg.input_format)
        check_num_classes(names, cfg.num_classes, cfg.dataset_path, trained=True)
        return eval_ds
    check_num_classes(class_names(cfg.eval_dataset_path), cfg.num_classes, cfg.eval_dataset_path, trained=True)
    return create_dataset(cfg.eval_dataset_path, do_train=False, batch_size=batch, image_size=cfg.image_size,
                          num_parallel_workers=workers, input_format=cfg.input_format, seed=cfg.seed)


def validation_files(cfg):
    """(files [(path, label)], class names) of the validation data: the validation split of
    ``dataset_path`` with ``is_transfer``, else every image of ``eval_dataset_path``."""
    if cfg.is_transfer:
        _, val, names = split_files(cfg.dataset_path, seed=cfg.seed)
        return val, names
    names, files = list_class_files(cfg.eval_dataset_path)
    return [(os.path.join(cfg.eval_dataset_path, name, f), label)
            for label, name in enumerate(names) for f in files[name]], names
