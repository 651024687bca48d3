"""Transfer-learning data: one folder of class sub-folders split into training and validation.

A flower_photos-style folder (``ROOT/daisy/*.jpg, ROOT/roses/*.jpg, ...``) is split per
class, 80% training / 20% validation by default, reproducibly: a file's place in its
class is set by a hash of the seed, the class and its file name, so the same seed gives
the same split on every machine and Python/numpy version, and adding photos does not
move the old ones around at random. No image is in both parts.

Both parts are read by ``mindspore.dataset.ImageFolderDataset`` (the same engine,
labels, image check and transforms as ``src/dataset.py``) with a sampler over the
indices of the chosen files: training shuffles and drops the last partial batch,
validation keeps the file order and scores every image.

    from transfer_dataset_process import create_flower_dataset, split_files
    train_ds, eval_ds, class_names = create_flower_dataset("flower_photos", batch_size=32)
"""
import hashlib
import math
import os

import mindspore as ms
import mindspore.dataset as ds

from src.dataset import (IMG_EXTENSIONS, DatasetError, check_complete_image, class_names as folder_classes,
                         default_num_workers, eval_transforms, train_transforms, INPUT_FORMATS)

__all__ = ["create_flower_dataset", "split_files", "split_indices", "list_images", "DatasetError"]


def list_images(dataset_path):
    """(class names, {class: sorted file names}) of ``dataset_path/<class>/<image>``.

    The files are those ``ImageFolderDataset`` reads, in its order: the images directly in
    each class folder (extensions ``IMG_EXTENSIONS``), sorted by name.
    """
    names = folder_classes(dataset_path)
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
    names, files = list_images(dataset_path)
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
    a class: the order of :func:`list_images` (tests/test_transfer.py checks this against
    MindSpore; the image count is checked here).

    Returns:
        (train indices of shard ``shard_id``, validation indices, class names). With
        ``num_shards`` > 1 the training indices are a seeded permutation cut into equal,
        disjoint parts (the same number of steps on every rank).
    """
    train, val, names = split_files(dataset_path, seed, train_ratio)
    _, files = list_images(dataset_path)
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


def _check_args(batch_size, eval_batch_size, image_size, num_shards, shard_id, input_format, workers):
    for key, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 0),
                            ("image_size", image_size, 32), ("num_shards", num_shards, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DatasetError(f"{key}={value!r} must be an integer >= {low}")
    if not 0 <= shard_id < num_shards:
        raise DatasetError(f"shard_id={shard_id} must be in [0, {num_shards})")
    if input_format not in INPUT_FORMATS:
        raise DatasetError(f"input_format={input_format!r} is not supported; choose one of {list(INPUT_FORMATS)}")
    cores = os.cpu_count() or 1
    if workers > cores:
        raise DatasetError(f"num_parallel_workers={workers} exceeds this machine's {cores} CPU cores; "
                           f"use at most {cores} (or 0 for automatic)")


def _pipeline(dataset_path, names, sampler, ops, batch_size, drop_remainder, workers):
    data = ds.ImageFolderDataset(dataset_path, num_parallel_workers=workers, sampler=sampler,
                                 extensions=list(IMG_EXTENSIONS),
                                 class_indexing={name: i for i, name in enumerate(names)})
    data = data.map(operations=[check_complete_image] + ops, input_columns="image", num_parallel_workers=workers)
    data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label",
                    num_parallel_workers=workers)
    return data.batch(batch_size, drop_remainder=drop_remainder)


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
        input_format (str): one of ``src.dataset.INPUT_FORMATS``.
        num_shards, shard_id (int): data-parallel training: each rank gets an equal, disjoint
            part of the training split (validation is not sharded).
        train_ratio (float): fraction of each class used for training.

    Returns:
        (train_ds, eval_ds, class_names): batched datasets with columns ``image`` (float32
        CHW) and ``label`` (int32), and the class names (label i = class_names[i]).

    Raises:
        DatasetError: bad folder (missing, no classes, a class with fewer than 2 images),
            or bad arguments.
    """
    workers = num_parallel_workers or default_num_workers(num_shards)
    _check_args(batch_size, eval_batch_size, image_size, num_shards, shard_id, input_format, workers)
    train_idx, val_idx, names = split_indices(dataset_path, seed, train_ratio, num_shards, shard_id)
    ds.config.set_seed(seed)
    train_ds = _pipeline(dataset_path, names, ds.SubsetRandomSampler(train_idx),
                         train_transforms(image_size, input_format), batch_size, True, workers)
    eval_ds = _pipeline(dataset_path, names, ds.SubsetSampler(val_idx), eval_transforms(image_size, input_format),
                        eval_batch_size or batch_size, False, workers)
    return train_ds, eval_ds, names
