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
from src.checkpoint_utils import (CheckpointError, adopt_checkpoint_config, describe_variant, infer_variant,
                                  join_group_pieces, load_pretrained, read_checkpoint, read_recorded)
from src.model_utils.config import load_config
from src.model_utils.errors import UsageError
from src.shufflenetv1 import STAGE_CHANNELS, ShuffleNetV1

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


def test_other_variant_is_refused_naming_the_variant_of_its_shapes(zoo):
    with pytest.raises(CheckpointError, match=r"the checkpoint is 0\.5x g3: stem 12, stage 2 120 channels, 10 classes: "
                                              r"pass --model_size 0\.5x --group 3\): .*first_conv\.0\.weight"):
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
    assert read_recorded(read_checkpoint(path)) == {"pool_pad": "symmetric", "input_format": "bgr_255"}
    assert read_recorded(read_checkpoint(zoo[3][2])) == {}
    # The string entries do not disturb loading.
    assert load_pretrained(our_net(3), path)["skipped"] == []


@pytest.mark.parametrize("group,model_size", sorted(STAGE_CHANNELS))
def test_the_variant_of_a_checkpoint_is_read_from_its_shapes(tmp_path, group, model_size):
    path = str(tmp_path / "v.ckpt")
    ms.save_checkpoint(ShuffleNetV1(model_size, group, num_classes=17), path)
    stem, stage2 = STAGE_CHANNELS[(group, model_size)][:2]
    implied = infer_variant(read_checkpoint(path))
    assert implied == {"model_size": model_size, "group": group, "num_classes": 17, "stem": stem, "stage2": stage2}
    assert describe_variant(implied) == (f"the checkpoint is {model_size} g{group}: stem {stem}, stage 2 {stage2} "
                                         "channels, 17 classes")


@pytest.mark.parametrize("groups", [3, 8])
def test_the_variant_of_a_model_zoo_checkpoint_is_read_from_its_pieces(zoo, groups):
    implied = infer_variant(read_checkpoint(zoo[groups][2]))
    assert (implied["model_size"], implied["group"], implied["num_classes"]) == ("0.5x", groups, NUM_CLASSES)


def test_a_checkpoint_of_another_network_implies_no_variant(tmp_path):
    path = str(tmp_path / "other.ckpt")
    ms.save_checkpoint(nn.Dense(3, 4), path)
    assert infer_variant(read_checkpoint(path)) == {}


def _cfg(overrides=None, yaml_text=None, tmp_path=None):
    config_path = None
    if yaml_text is not None:
        config_path = str(tmp_path / "c.yaml")
        with open(config_path, "w", encoding="utf-8") as fh:
            fh.write(yaml_text)
    return load_config(config_path, overrides or {})


def test_checkpoint_config_is_adopted_unless_the_command_line_says_otherwise(tmp_path, capsys):
    path = str(tmp_path / "ours.ckpt")
    ms.save_checkpoint(our_net(8), path, append_dict={"model_size": "0.5x", "group": 8, "num_classes": 10,
                                                      "pool_pad": "symmetric", "input_format": "rgb_normalized",
                                                      "image_size": 48})
    # The YAML's 2.0x g3 / 1000 classes give way to what the checkpoint records, with a note each.
    cfg = _cfg({"image_size": "64"}, "model_size: 2.0x\ngroup: 3\nnum_classes: 1000\n", tmp_path)
    adopt_checkpoint_config(cfg, path, "eval")
    assert (cfg.model_size, cfg.group, cfg.num_classes, cfg.pool_pad) == ("0.5x", 8, 10, "symmetric")
    out = capsys.readouterr().out
    assert f"using model_size=0.5x recorded in {path} (the config said 2.0x)" in out
    assert "using group=8" in out and "using num_classes=10" in out and "using pool_pad=symmetric" in out
    # evaluated at another size than it was trained at: a warning naming both
    assert "image_size=64, but the network" in out and "trained at 48 px" in out and "--image_size 48" in out
    # The command line contradicting the checkpoint is an error naming both.
    for key, value, shown in (("model_size", "1.0x", "the checkpoint is 0.5x g8"), ("group", "3", "0.5x g8"),
                              ("num_classes", "5", "10 classes"), ("pool_pad", "same", "pool_pad=symmetric")):
        with pytest.raises(UsageError) as info:
            adopt_checkpoint_config(_cfg({key: value}), path, "export")
        assert f"--{key} {value} contradicts {path}" in str(info.value) and shown in str(info.value)
    # Agreeing with it is fine.
    adopt_checkpoint_config(_cfg({"model_size": "0.5x", "group": "8"}), path, "eval")


def test_a_foreign_checkpoint_is_described_by_its_shapes(zoo, capsys):
    cfg = _cfg()
    adopt_checkpoint_config(cfg, zoo[8][2], "eval")
    assert (cfg.model_size, cfg.group, cfg.num_classes) == ("0.5x", 8, NUM_CLASSES)
    assert f"using group=8 implied by the shapes of {zoo[8][2]}" in capsys.readouterr().out
    with pytest.raises(UsageError, match=r"--model_size 2\.0x contradicts .*the checkpoint is 0\.5x g8: stem 16, "
                                         r"stage 2 192 channels"):
        adopt_checkpoint_config(_cfg({"model_size": "2.0x"}), zoo[8][2], "eval")


def test_fine_tuning_keeps_its_own_class_count(zoo, tmp_path):
    cfg = _cfg({"is_transfer": "True", "dataset_path": "x"}, "num_classes: 3\n", tmp_path)
    adopt_checkpoint_config(cfg, zoo[3][2], "train")
    assert (cfg.model_size, cfg.num_classes) == ("0.5x", 3)  # a new classifier for the 3 classes
    cfg = _cfg({"num_classes": "4"})  # fine-tuning on an ImageNet-style folder of 4 classes
    adopt_checkpoint_config(cfg, zoo[3][2], "train")
    assert (cfg.model_size, cfg.num_classes) == ("0.5x", 4)
    with pytest.raises(UsageError, match="--num_classes 4 contradicts"):  # evaluating it so is a mistake
        adopt_checkpoint_config(_cfg({"num_classes": "4"}), zoo[3][2], "eval")
    cfg = _cfg()  # nothing said: the checkpoint's network, classifier included
    adopt_checkpoint_config(cfg, zoo[3][2], "train")
    assert cfg.num_classes == NUM_CLASSES
