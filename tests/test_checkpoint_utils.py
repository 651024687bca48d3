"""Tests of src/checkpoint_utils.py: our own checkpoints, the original model-zoo checkpoint
layout (grouped convs stored as per-group pieces), and the errors that name what does not fit.

The model-zoo network is rebuilt here from the facts of its description (names, per-group
``convs.{k}`` pieces, "same" pooling), not from our network's code, so the test checks the
mapping against an independent implementation.
"""
import numpy as np
import pytest
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from helpers import fill_deterministic
from src.checkpoint_utils import (CheckpointError, join_group_pieces, load_pretrained, read_checkpoint,
                                  read_network_options)
from src.shufflenetv1 import ShuffleNetV1

# 0.5x channels (stem, stage2, stage3, stage4) of the published architecture.
ZOO_CHANNELS = {3: (12, 120, 240, 480), 8: (16, 192, 384, 768)}
NUM_CLASSES = 10


class ZooGroupConv(nn.Cell):
    """The model zoo's grouped 1x1 conv: g plain convs, conv k maps input block k to output block k."""

    def __init__(self, in_channels, out_channels, groups):
        super().__init__()
        self.groups = groups
        self.convs = nn.CellList([nn.Conv2d(in_channels // groups, out_channels // groups, 1,
                                            pad_mode="pad", padding=0, has_bias=False)
                                  for _ in range(groups)])

    def construct(self, x):
        blocks = ops.split(x, x.shape[1] // self.groups, axis=1)
        return ops.cat([conv(block) for conv, block in zip(self.convs, blocks)], axis=1)


def zoo_shuffle(x, groups):
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels // groups, groups, height, width).transpose(0, 2, 1, 3, 4)
    return x.reshape(batch, channels, height, width)


class ZooUnit(nn.Cell):
    def __init__(self, inp, oup, groups, stride, first_group):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = oup // 4
        outputs = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.SequentialCell([ZooGroupConv(inp, mid, 1 if first_group else groups),
                                                nn.BatchNorm2d(mid), nn.ReLU()])
        self.branch_main_2 = nn.SequentialCell([
            nn.Conv2d(mid, mid, 3, stride=stride, pad_mode="pad", padding=1, group=mid, has_bias=False),
            nn.BatchNorm2d(mid), ZooGroupConv(mid, outputs, groups), nn.BatchNorm2d(outputs)])
        self.pool = nn.AvgPool2d(3, 2, pad_mode="same")

    def construct(self, x):
        main = self.branch_main_2(zoo_shuffle(self.branch_main_1(x), self.groups))
        if self.stride == 1:
            return ops.relu(x + main)
        return ops.relu(ops.cat((self.pool(x), main), axis=1))


class ZooNet(nn.Cell):
    """The model zoo's ShuffleNetV1 with its parameter names."""

    def __init__(self, groups, num_classes=NUM_CLASSES):
        super().__init__()
        stem, *stages = ZOO_CHANNELS[groups]
        self.first_conv = nn.SequentialCell([
            nn.Conv2d(3, stem, 3, stride=2, pad_mode="pad", padding=1, has_bias=False),
            nn.BatchNorm2d(stem), nn.ReLU()])
        self.maxpool = nn.MaxPool2d(3, 2, pad_mode="same")
        units, inp = [], stem
        for stage, (oup, repeats) in enumerate(zip(stages, (4, 8, 4))):
            for i in range(repeats):
                units.append(ZooUnit(inp, oup, groups, 2 if i == 0 else 1, first_group=stage == 0 and i == 0))
                inp = oup
        self.features = nn.SequentialCell(units)
        self.classifier = nn.Dense(inp, num_classes)

    def construct(self, x):
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(x.mean(axis=(2, 3)))


def save_entries(path, entries, append_dict=None):
    """Write name -> array entries as a MindSpore checkpoint."""
    ms.save_checkpoint([{"name": name, "data": ms.Tensor(value)} for name, value in entries.items()],
                       str(path), append_dict=append_dict)
    return str(path)


def zoo_entries(groups, seed):
    """A random model-zoo network: (its eval-mode net, its checkpoint entries with optimizer state)."""
    net = fill_deterministic(ZooNet(groups), seed)
    net.set_train(False)
    weights = {name: param.asnumpy() for name, param in net.parameters_and_names()}
    moments = {f"moments.{name}": np.full_like(value, 0.5) for name, value in weights.items()
               if not name.endswith(("moving_mean", "moving_variance"))}
    return net, {**weights, **moments}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """groups -> (model-zoo net, its entries, path of its checkpoint)."""
    folder = tmp_path_factory.mktemp("zoo")
    result = {}
    for groups, seed in ((3, 11), (8, 12)):
        net, entries = zoo_entries(groups, seed)
        path = save_entries(folder / f"zoo_g{groups}.ckpt", entries,
                            append_dict={"learning_rate": 0.1, "global_step": 1234})
        result[groups] = (net, entries, path)
    return result


def our_net(groups, num_classes=NUM_CLASSES, seed=0, pool_pad="same"):
    net = fill_deterministic(ShuffleNetV1("0.5x", groups, num_classes=num_classes, pool_pad=pool_pad), seed)
    net.set_train(False)
    return net


def images(seed=0, shape=(2, 3, 48, 64)):
    # 48 x 64 gives odd feature maps (3 x 4 before stage 4), where pooling paddings differ.
    return ms.Tensor(np.random.RandomState(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("groups", [3, 8])
def test_model_zoo_checkpoint_computes_the_model_zoo_function(zoo, groups):
    zoo_net, entries, path = zoo[groups]
    names = set(read_checkpoint(path))
    # The fixture has the published layout: per-group pieces, no joined grouped weights.
    assert "features.0.branch_main_1.0.convs.0.weight" in names
    assert f"features.1.branch_main_1.0.convs.{groups - 1}.weight" in names
    assert "features.1.branch_main_1.0.weight" not in names
    assert {"moments.classifier.weight", "learning_rate", "global_step"} <= names

    net = our_net(groups)
    report = load_pretrained(net, path)
    assert report["skipped"] == []
    assert "features.1.branch_main_2.2.weight" in report["loaded"]
    x = images(groups)
    expected = zoo_net(x).asnumpy()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    # The inputs reach every unit: a network with other weights is far off.
    assert np.abs(our_net(groups, seed=5)(x).asnumpy() - expected).max() > 1e-2


def test_grouped_weight_is_the_pieces_joined_along_the_output_axis(zoo):
    _, entries, path = zoo[3]
    params = read_checkpoint(path)
    wanted = {"features.4.branch_main_2.2.weight": None, "moments.unused.weight": None}
    joined = join_group_pieces(params, wanted, path)
    assert list(joined) == ["features.4.branch_main_2.2.weight"]
    pieces = [entries[f"features.4.branch_main_2.2.convs.{k}.weight"] for k in range(3)]
    np.testing.assert_array_equal(joined["features.4.branch_main_2.2.weight"].asnumpy(),
                                  np.concatenate(pieces, axis=0))


def test_own_checkpoint_round_trip(tmp_path):
    source = our_net(3, seed=3)
    path = str(tmp_path / "ours.ckpt")
    ms.save_checkpoint(source, path)
    target = our_net(3, seed=4)
    report = load_pretrained(target, path)
    assert report["skipped"] == []
    for (name, a), (_, b) in zip(source.parameters_and_names(), target.parameters_and_names()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=name)


def write_variant(tmp_path, zoo, edit, name="edited.ckpt"):
    """The g3 model-zoo checkpoint after ``edit(entries)`` (which changes the dict in place)."""
    entries = dict(zoo[3][1])
    edit(entries)
    return save_entries(tmp_path / name, entries)


def test_missing_parameter_is_named(tmp_path, zoo):
    path = write_variant(tmp_path, zoo, lambda e: e.pop("features.5.branch_main_2.1.gamma"))
    with pytest.raises(CheckpointError, match=r"lacks 1 parameter.*features\.5\.branch_main_2\.1\.gamma"):
        load_pretrained(our_net(3), path)


def test_missing_group_piece_is_named(tmp_path, zoo):
    path = write_variant(tmp_path, zoo, lambda e: e.pop("features.2.branch_main_2.2.convs.1.weight"))
    with pytest.raises(CheckpointError, match=r"lacks features\.2\.branch_main_2\.2\.convs\.1\.weight"):
        load_pretrained(our_net(3), path)


def test_missing_last_group_piece_shows_as_a_wrong_joined_shape(tmp_path, zoo):
    path = write_variant(tmp_path, zoo, lambda e: e.pop("features.2.branch_main_2.2.convs.2.weight"))
    with pytest.raises(CheckpointError) as info:
        load_pretrained(our_net(3), path)
    message = str(info.value)
    assert "features.2.branch_main_2.2.weight (joined from features.2.branch_main_2.2.convs.*)" in message
    assert "checkpoint (80, 10, 1, 1), network (120, 10, 1, 1)" in message


def test_wrong_shape_is_named_with_both_shapes(tmp_path, zoo):
    def edit(entries):
        entries["features.3.branch_main_2.0.weight"] = np.zeros((30, 1, 5, 5), np.float32)
    path = write_variant(tmp_path, zoo, edit)
    with pytest.raises(CheckpointError,
                       match=r"features\.3\.branch_main_2\.0\.weight: checkpoint \(30, 1, 5, 5\), "
                             r"network \(30, 1, 3, 3\)"):
        load_pretrained(our_net(3), path)


def test_other_variant_is_refused(zoo):
    with pytest.raises(CheckpointError, match=r"another model_size/group\?.*first_conv\.0\.weight"):
        load_pretrained(our_net(8), zoo[3][2])


def test_classifier_dropped_only_when_class_count_differs(tmp_path, zoo):
    _, entries, path = zoo[3]
    # Same class count: the classifier is loaded even when dropping is allowed.
    net = our_net(3, seed=7)
    report = load_pretrained(net, path, allow_classifier_mismatch=True)
    assert report["skipped"] == []
    np.testing.assert_array_equal(net.classifier.weight.asnumpy(), entries["classifier.weight"])

    # Another class count: dropped when allowed, the backbone still loaded.
    net = our_net(3, num_classes=7, seed=7)
    initial = net.classifier.weight.asnumpy().copy()
    report = load_pretrained(net, path, allow_classifier_mismatch=True)
    assert [name for name, _ in report["skipped"]] == ["classifier.weight", "classifier.bias"]
    assert "10 classes" in report["skipped"][0][1]
    np.testing.assert_array_equal(net.classifier.weight.asnumpy(), initial)
    np.testing.assert_array_equal(net.features[6].branch_main_2[0].weight.asnumpy(),
                                  entries["features.6.branch_main_2.0.weight"])

    # ... and an error naming the classifier when not allowed.
    with pytest.raises(CheckpointError, match=r"10 classes.*classifier\.weight: checkpoint \(10, 480\), "
                                              r"network \(7, 480\)"):
        load_pretrained(our_net(3, num_classes=7), path)

    # A classifier of another input width is not a class-count change: still an error.
    def edit(e):
        e["classifier.weight"] = np.zeros((7, 100), np.float32)
        e["classifier.bias"] = np.zeros((7,), np.float32)
    other = write_variant(tmp_path, zoo, edit)
    with pytest.raises(CheckpointError, match=r"classifier\.weight: checkpoint \(7, 100\), network \(7, 480\)"):
        load_pretrained(our_net(3, num_classes=7), other, allow_classifier_mismatch=True)


def test_damaged_files_are_reported(tmp_path, zoo):
    with open(zoo[3][2], "rb") as handle:
        data = handle.read()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[:len(data) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(np.random.RandomState(0).bytes(4000))
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=r"cannot be read: it is damaged"):
            load_pretrained(our_net(3), str(path))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(our_net(3), str(tmp_path / "absent.ckpt"))
    torch_file = tmp_path / "ShuffleNetV1_0.5x_g3.pth.tar"
    torch_file.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"PyTorch file.*tools/convert_megvii\.py"):
        load_pretrained(our_net(3), str(torch_file))


def test_network_options_recorded_in_a_checkpoint(tmp_path, zoo):
    path = save_entries(tmp_path / "options.ckpt", dict(zoo[3][1]),
                        append_dict={"pool_pad": "symmetric", "input_format": "bgr_255"})
    assert read_network_options(path) == {"pool_pad": "symmetric", "input_format": "bgr_255"}
    assert read_network_options(zoo[3][2]) == {}
    # The string entries do not disturb loading.
    assert load_pretrained(our_net(3), path)["skipped"] == []


def test_other_variant_recorded_in_the_checkpoint_is_named(tmp_path):
    # train.py records the variant in its checkpoints; the error then says which it is
    path = str(tmp_path / "g8.ckpt")
    ms.save_checkpoint(our_net(8), path, append_dict={"model_size": "0.5x", "group": 8, "num_classes": 10})
    with pytest.raises(CheckpointError, match=r"it records model_size=0\.5x group=8: pass those"):
        load_pretrained(our_net(3), path)
