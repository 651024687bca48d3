"""Data pipeline: labels, transforms, sharding, every image scored, bad data named."""
import os

import numpy as np
import pytest
from PIL import Image

from src.dataset import DatasetError, class_names, create_dataset, eval_resize
from src.model_utils.errors import dataset_error_message
from src.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=7, val_per_class=6, image_size=40)


def _rows(data):
    return list(data.create_dict_iterator(output_numpy=True, num_epochs=1))


def test_labels_follow_sorted_class_folders(shapes):
    _, val = shapes
    names = class_names(val)
    assert names == sorted(names) == ["checker", "hstripes", "vstripes"]
    rows = _rows(create_dataset(val, do_train=False, batch_size=1, image_size=32))
    labels = [int(r["label"][0]) for r in rows]
    assert labels == [0] * 6 + [1] * 6 + [2] * 6  # file order, label = index of the sorted folder


@pytest.mark.parametrize("do_train", [True, False])
@pytest.mark.parametrize("input_format", ["rgb_normalized", "bgr_255"])
def test_transforms_give_chw_float32(shapes, do_train, input_format):
    train, _ = shapes
    row = _rows(create_dataset(train, do_train=do_train, batch_size=4, image_size=36, input_format=input_format))[0]
    assert row["image"].shape == (4, 3, 36, 36) and row["image"].dtype == np.float32
    assert row["label"].dtype == np.int32
    if input_format == "bgr_255":
        assert row["image"].min() >= 0 and row["image"].max() <= 255 and row["image"].max() > 2
    else:
        assert row["image"].min() < 0 < row["image"].max() < 5


def test_eval_preprocessing_matches_the_recipe(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    yy, xx = np.mgrid[0:80, 0:120]
    # A smooth, asymmetric image, so resampling kernels agree and a wrong crop or order shows.
    pixels = np.stack([xx * 2, yy * 3, (xx + yy) % 200], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "x.png")
    image = _rows(create_dataset(str(tmp_path), do_train=False, batch_size=1, image_size=64))[0]["image"][0]
    # Short side to eval_resize(64) = 68, then the centre 64x64, then ImageNet mean/std, CHW.
    assert eval_resize(224) == 239 and eval_resize(64) == 68
    resized = np.asarray(Image.fromarray(pixels).resize((102, 68), Image.BILINEAR), dtype=np.float32)
    top, left = (68 - 64) // 2, (102 - 64) // 2
    crop = resized[top:top + 64, left:left + 64]
    expected = ((crop - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])).transpose(2, 0, 1)
    assert np.abs(image - expected).mean() < 0.02  # resampling kernels differ slightly


def test_bgr_255_is_channel_reversed_raw_pixels(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    Image.new("RGB", (40, 40), (10, 120, 240)).save(folder / "x.png")
    image = _rows(create_dataset(str(tmp_path), do_train=False, batch_size=1, image_size=32,
                                 input_format="bgr_255"))[0]["image"][0]
    np.testing.assert_allclose(image[:, 16, 16], [240, 120, 10], atol=1)


def test_eval_scores_every_image_including_the_last_partial_batch(shapes):
    _, val = shapes
    rows = _rows(create_dataset(val, do_train=False, batch_size=4, image_size=32))
    assert [len(r["label"]) for r in rows] == [4, 4, 4, 4, 2]
    train_rows = _rows(create_dataset(val, do_train=True, batch_size=4, image_size=32))
    assert [len(r["label"]) for r in train_rows] == [4, 4, 4, 4]  # training drops the remainder


def test_shards_are_disjoint_and_cover_the_data(shapes):
    _, val = shapes  # 18 images: 9 per shard (with a count not divisible by the shards, MindSpore's
    # sampler repeats up to num_shards - 1 images so that every shard has the same size)

    def images(shard):
        rows = _rows(create_dataset(val, do_train=False, batch_size=1, image_size=32, num_shards=2, shard_id=shard))
        return [r["image"][0].tobytes() for r in rows]

    first, second = images(0), images(1)
    everything = [r["image"][0].tobytes() for r in _rows(create_dataset(val, do_train=False, batch_size=1,
                                                                        image_size=32))]
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(everything)


def test_seeded_training_pipeline_is_reproducible(shapes):
    train, _ = shapes
    a = _rows(create_dataset(train, do_train=True, batch_size=7, image_size=32, seed=3))
    b = _rows(create_dataset(train, do_train=True, batch_size=7, image_size=32, seed=3))
    np.testing.assert_array_equal(a[0]["image"], b[0]["image"])
    np.testing.assert_array_equal(a[0]["label"], b[0]["label"])


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_non_rgb_images_just_work(tmp_path, mode):
    folder = tmp_path / "c"
    folder.mkdir()
    img = Image.fromarray(np.random.RandomState(1).randint(0, 256, (40, 40, 3)).astype(np.uint8)).convert(mode)
    img.save(folder / ("x.jpg" if mode in ("L", "CMYK") else "x.png"))
    row = _rows(create_dataset(str(tmp_path), do_train=False, batch_size=1, image_size=32))[0]
    assert row["image"].shape == (1, 3, 32, 32)


@pytest.mark.parametrize("ext", ["bmp", "tif", "jpeg"])
def test_every_listed_format_decodes(tmp_path, ext):
    folder = tmp_path / "c"
    folder.mkdir()
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (40, 36, 3)).astype(np.uint8)).save(folder / f"x.{ext}")
    for do_train in (True, False):
        row = _rows(create_dataset(str(tmp_path), do_train=do_train, batch_size=1, image_size=32))[0]
        assert row["image"].shape == (1, 3, 32, 32)


@pytest.mark.parametrize("do_train", [True, False])
@pytest.mark.parametrize("content,why", [(b"\x00\x01garbage" * 300, "not an image"),
                                         (b"<html>404 Not Found</html>", "not an image"),
                                         ("webp", "WebP image, which MindSpore's decoder does not read")])
def test_file_that_is_no_image_is_named(tmp_path, monkeypatch, do_train, content, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "a" / "good.jpg")
    bad = tmp_path / "a" / "junk.jpg"  # e.g. an error page saved under an image name
    if content == "webp":
        Image.new("RGB", (40, 40)).save(bad, format="WEBP")
    else:
        bad.write_bytes(content)
    with pytest.raises(RuntimeError) as info:
        _rows(create_dataset(str(tmp_path), do_train=do_train, batch_size=1, image_size=32))
    message = dataset_error_message(info.value)
    assert message and str(bad) in message and why in message, message


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist or is not a directory"):
        create_dataset(str(tmp_path / "nope"), do_train=True)


def test_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"'{tmp_path}' holds no class folders"):
        create_dataset(str(tmp_path), do_train=True)


def test_class_folder_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "cat" / "a.jpg")
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=f"class folder '{os.path.join(tmp_path, 'dog')}' holds no images"):
        create_dataset(str(tmp_path), do_train=False)


def test_corrupt_image_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MindSpore drops abnormal_image.jpg into the working folder
    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "a" / "good.jpg")
    bad = tmp_path / "a" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 4)
    data = create_dataset(str(tmp_path), do_train=False, batch_size=1, image_size=32)
    with pytest.raises(RuntimeError) as info:
        _rows(data)
    message = dataset_error_message(info.value)
    assert message and str(bad) in message and "corrupt, truncated or not an image" in message


def test_truncated_image_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "cut.jpg"
    Image.fromarray(np.random.RandomState(2).randint(0, 256, (64, 64, 3)).astype(np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError) as info:
        _rows(create_dataset(str(tmp_path), do_train=True, batch_size=1, image_size=32))
    assert str(path) in dataset_error_message(info.value)


def test_unknown_input_format(shapes):
    # (the config's values, image_size and workers included, are checked by tests/test_config.py)
    with pytest.raises(DatasetError, match="input_format='yuv' is not supported"):
        create_dataset(shapes[0], do_train=True, input_format="yuv")


def test_unrelated_errors_are_not_dataset_errors():
    assert dataset_error_message(RuntimeError("something else")) is None
