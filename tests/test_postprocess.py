"""The Ascend 310 pre/post-processing: label file, input bins, accuracy of result files.

postprocess.py is checked on result files written here with known answers; preprocess.py
against the evaluation pipeline of src/dataset.py; and the whole file chain (label file ->
input bins -> one ``<img_id>_0.bin`` per image -> accuracy) against eval-mode logits, with
the batch-1 MINDIR run by MindSpore itself in place of the C++ program (MindSpore Lite 2.0
cannot load MindSpore 2.10's MINDIR; see test_ascend310_build.py).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

import postprocess
import preprocess
from helpers import fill_deterministic, make_image_folder
from src.dataset import DatasetError, create_dataset, list_images
from src.exporter import export_network
from src.metrics import format_accuracy, topk_accuracy
from src.model_utils.errors import UsageError
from src.shufflenetv1 import ShuffleNetV1
from tools.make_label_file import write_label_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_results(folder, logits_by_id):
    os.makedirs(folder, exist_ok=True)
    for img_id, logits in logits_by_id.items():
        np.asarray(logits, np.float32).tofile(os.path.join(folder, f"{img_id}_0.bin"))


def write_labels(path, labels_by_id):
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{img_id}:{label}\n" for img_id, label in labels_by_id.items())


def one_hot_rank(classes, order):
    """Logits whose descending order is ``order`` followed by the remaining classes."""
    logits = np.zeros(classes, np.float32)
    for rank, cls in enumerate(order):
        logits[cls] = 10.0 - rank
    return logits


# ---------------------------------------------------------------- postprocess.py

@pytest.fixture
def known(tmp_path):
    """7 classes, 6 images: the label is first for 3, 2nd-5th for 2, 6th for 1 -> 50.00% / 83.33%."""
    rank_of_label = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 4, "f": 5}
    labels = {"a": 3, "b": 0, "c": 6, "d": 2, "e": 5, "f": 1}
    results = {}
    for img_id, rank in rank_of_label.items():
        others = [c for c in range(7) if c != labels[img_id]]
        results[img_id] = one_hot_rank(7, others[:rank] + [labels[img_id]] + others[rank:])
    write_results(tmp_path / "result_Files", results)
    write_labels(tmp_path / "labels.txt", labels)
    return tmp_path


def test_known_accuracy_printed_and_logged(known, capsys):
    log = known / "acc.log"
    assert postprocess.main(["--result_path", str(known / "result_Files"), "--label_file",
                             str(known / "labels.txt"), "--log_path", str(log)]) == 0
    out = capsys.readouterr().out
    assert "6 images, 7 classes" in out
    assert "Top_1_Acc=50.00%, Top_5_Acc=83.33%" in out
    assert log.read_text() == "Top_1_Acc=50.00%, Top_5_Acc=83.33%\n"


def test_class_count_comes_from_the_result_files(tmp_path):
    # 3 classes: top-5 covers every class, so it is 100% even with a wrong top-1.
    write_results(tmp_path / "r", {"x": [0.1, 0.9, 0.0], "y": [0.8, 0.1, 0.1]})
    write_labels(tmp_path / "l.txt", {"x": 1, "y": 2})
    logits, targets, img_ids = postprocess.read_results(str(tmp_path / "r"),
                                                        postprocess.read_label_file(str(tmp_path / "l.txt")))
    assert logits.shape == (2, 3) and img_ids == ["x", "y"] and targets.tolist() == [1, 2]
    assert topk_accuracy(logits, targets, 1) == 0.5
    assert topk_accuracy(logits, targets, 5) == 1.0


def test_img_ids_with_underscores_and_dots(tmp_path):
    write_results(tmp_path / "r", {"ILSVRC2012_val_00000001": [0, 1], "v1.2_x": [1, 0]})
    write_labels(tmp_path / "l.txt", {"ILSVRC2012_val_00000001": 1, "v1.2_x": 1})
    logits, targets, _ = postprocess.read_results(str(tmp_path / "r"),
                                                  postprocess.read_label_file(str(tmp_path / "l.txt")))
    assert topk_accuracy(logits, targets, 1) == 0.5


def _fails(argv, capsys, code=1):
    assert postprocess.main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_result_file_is_named(known, capsys):
    os.remove(known / "result_Files" / "d_0.bin")
    err = _fails(["--result_path", str(known / "result_Files"), "--label_file", str(known / "labels.txt"),
                  "--log_path", str(known / "acc.log")], capsys)
    assert "1 labelled image(s) have no result file" in err and "d_0.bin" in err
    assert not (known / "acc.log").exists()


def test_result_without_label_is_named(known, capsys):
    write_results(known / "result_Files", {"stray": np.zeros(7)})
    err = _fails(["--result_path", str(known / "result_Files"), "--label_file", str(known / "labels.txt")], capsys)
    assert "no line in the label file" in err and "stray_0.bin" in err


def test_malformed_label_line_is_named(known, capsys):
    (known / "labels.txt").write_text("a:3\nb 0\n")
    err = _fails(["--result_path", str(known / "result_Files"), "--label_file", str(known / "labels.txt")], capsys)
    assert "labels.txt:2" in err and "'b 0'" in err


def test_label_outside_class_count(known, capsys):
    write_labels(known / "labels.txt", {k: (9 if k == "e" else 0) for k in "abcdef"})
    err = _fails(["--result_path", str(known / "result_Files"), "--label_file", str(known / "labels.txt")], capsys)
    assert "label 9 of 'e' is outside the 7 classes" in err


def test_result_files_of_different_sizes(known, capsys):
    write_results(known / "result_Files", {"c": np.zeros(5)})
    err = _fails(["--result_path", str(known / "result_Files"), "--label_file", str(known / "labels.txt")], capsys)
    assert "differ in size" in err and "c_0.bin" in err


def test_missing_folder_and_label_file_are_usage_errors(tmp_path, capsys):
    err = _fails(["--result_path", str(tmp_path / "nowhere"), "--label_file", str(tmp_path / "l.txt")], capsys, 2)
    assert "does not exist" in err and "make_label_file.py" in err
    write_labels(tmp_path / "l.txt", {"a": 0})
    err = _fails(["--result_path", str(tmp_path / "nowhere"), "--label_file", str(tmp_path / "l.txt")], capsys, 2)
    assert "result_path=" in err and "is not a directory" in err


# ---------------------------------------------------------------- tools/make_label_file.py

def test_label_file_lists_every_image_with_sorted_class_labels(tmp_path):
    expected = make_image_folder(str(tmp_path / "data"))
    count, classes = write_label_file(str(tmp_path / "data"), str(tmp_path / "labels.txt"))
    assert (count, classes) == (7, 3)
    lines = (tmp_path / "labels.txt").read_text().splitlines()
    assert lines == [f"{img_id}:{label}" for img_id, label in expected]
    assert lines[0] == "ant_0:0" and lines[-1] == "cat_1:2"


def test_label_file_rejects_duplicate_img_ids(tmp_path):
    make_image_folder(str(tmp_path / "data"))
    os.rename(tmp_path / "data" / "bee" / "bee_0.jpg", tmp_path / "data" / "bee" / "ant_0.jpg")
    with pytest.raises(DatasetError, match=r"same img_id 'ant_0'"):
        list_images(str(tmp_path / "data"))


def test_label_tool_cli(tmp_path):
    make_image_folder(str(tmp_path / "data"))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_label_file.py"), "--data_path",
                           str(tmp_path / "data"), "--output", str(tmp_path / "l.txt")],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "7 images, 3 classes" in done.stdout and (tmp_path / "l.txt").read_text().count("\n") == 7
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_label_file.py"), "--data_path",
                           str(tmp_path / "nodata"), "--output", str(tmp_path / "m.txt")],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert done.returncode == 2 and "data_path=" in done.stderr and "is not a directory" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "m.txt").exists()


# ---------------------------------------------------------------- preprocess.py

@pytest.mark.parametrize("input_format", ["rgb_normalized", "bgr_255"])
def test_preprocess_matches_the_eval_pipeline(tmp_path, input_format):
    make_image_folder(str(tmp_path / "data"))
    assert preprocess.preprocess_folder(str(tmp_path / "data"), str(tmp_path / "bins"), 32, input_format) == 7
    bins = {name[:-4]: np.fromfile(tmp_path / "bins" / name, np.float32).reshape(3, 32, 32)
            for name in os.listdir(tmp_path / "bins") if name.endswith(".bin")}
    labels = {img_id: label for img_id, _, label in list_images(str(tmp_path / "data"))}
    assert sorted(bins) == sorted(labels)
    data = create_dataset(str(tmp_path / "data"), do_train=False, batch_size=1, image_size=32,
                          input_format=input_format)
    matched = set()
    for row in data.create_dict_iterator(output_numpy=True, num_epochs=1):
        image, label = row["image"][0], int(row["label"][0])
        same = [img_id for img_id, array in bins.items() if np.array_equal(array, image)]
        assert len(same) == 1 and labels[same[0]] == label
        matched.add(same[0])
    assert matched == set(bins)


def test_preprocess_names_a_corrupt_image(tmp_path, capsys):
    make_image_folder(str(tmp_path / "data"))
    (tmp_path / "data" / "bee" / "bee_1.png").write_bytes(b"not an image at all")
    assert preprocess.main(["--data_path", str(tmp_path / "data"), "--output_path", str(tmp_path / "bins"),
                            "--image_size", "32"]) == 1
    err = capsys.readouterr().err
    assert "bee_1.png" in err and "corrupt" in err and "Traceback" not in err


def test_preprocess_never_overwrites_another_set(tmp_path, capsys):
    make_image_folder(str(tmp_path / "data"))
    make_image_folder(str(tmp_path / "other"), per_class=(("ant", 2), ("bee", 3), ("cat", 2)), seed=5)
    (tmp_path / "bins").mkdir()
    (tmp_path / "bins" / "old_image.bin").write_bytes(b"\0" * 16)  # .bin files of unknown origin
    with pytest.raises(UsageError, match=r"already holds 1 \.bin file\(s\): files of an unknown data set"):
        preprocess.preprocess_folder(str(tmp_path / "data"), str(tmp_path / "bins"), 32)
    assert (tmp_path / "bins" / "old_image.bin").read_bytes() == b"\0" * 16
    # a folder of one set, then another set with the same img_ids (or other settings): refused, files kept
    preprocess.preprocess_folder(str(tmp_path / "data"), str(tmp_path / "good"), 32)
    before = {name: (tmp_path / "good" / name).read_bytes() for name in os.listdir(tmp_path / "good")}
    for data, size, fmt in (("other", 32, "rgb_normalized"), ("data", 48, "rgb_normalized"), ("data", 32, "bgr_255")):
        assert preprocess.main(["--data_path", str(tmp_path / data), "--output_path", str(tmp_path / "good"),
                                "--image_size", str(size), "--input_format", fmt]) == 2
        assert "already holds 7 .bin file(s)" in capsys.readouterr().err
    assert {name: (tmp_path / "good" / name).read_bytes() for name in os.listdir(tmp_path / "good")} == before
    # the same set and settings again: rewritten (the same files)
    assert preprocess.preprocess_folder(str(tmp_path / "data"), str(tmp_path / "good"), 32) == 7
    assert {name: (tmp_path / "good" / name).read_bytes() for name in os.listdir(tmp_path / "good")} == before


def test_preprocess_bad_folder(tmp_path):
    with pytest.raises(UsageError, match="is not a directory"):
        preprocess.preprocess_folder(str(tmp_path / "nowhere"), str(tmp_path / "bins"), 32)


# ---------------------------------------------------------------- the whole file chain

def test_file_chain_gives_the_accuracy_of_eval_logits(tmp_path, capsys):
    images = make_image_folder(str(tmp_path / "data"), per_class=(("ant", 3), ("bee", 3), ("cat", 3), ("dog", 3)))
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=6), seed=4)
    net.set_train(False)
    mindir = export_network(net, str(tmp_path / "net_bs1"), "MINDIR", batch_size=1, image_size=32)
    write_label_file(str(tmp_path / "data"), str(tmp_path / "labels.txt"))
    preprocess.preprocess_folder(str(tmp_path / "data"), str(tmp_path / "bins"), 32)

    # What ascend310_infer/src/main.cc does: each <img_id>.bin -> <img_id>_0.bin.
    graph = nn.GraphCell(ms.load(mindir))
    os.makedirs(tmp_path / "result_Files")
    for name in sorted(n for n in os.listdir(tmp_path / "bins") if n.endswith(".bin")):
        image = np.fromfile(tmp_path / "bins" / name, np.float32).reshape(1, 3, 32, 32)
        graph(ms.Tensor(image)).asnumpy().tofile(tmp_path / "result_Files" / f"{name[:-4]}_0.bin")

    data = create_dataset(str(tmp_path / "data"), do_train=False, batch_size=4, image_size=32)
    logits, labels = [], []
    for row in data.create_dict_iterator(output_numpy=True, num_epochs=1):
        logits.append(net(ms.Tensor(row["image"])).asnumpy())
        labels.append(row["label"].astype(np.int64))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    assert len(labels) == len(images) == 12
    top1 = topk_accuracy(logits, labels, 1)
    assert 0 < top1 < 1, "the check needs a network that is right on some images and wrong on others"
    expected = format_accuracy(top1, topk_accuracy(logits, labels, 5))

    assert postprocess.main(["--result_path", str(tmp_path / "result_Files"), "--label_file",
                             str(tmp_path / "labels.txt"), "--log_path", str(tmp_path / "acc.log")]) == 0
    assert expected in capsys.readouterr().out
    assert (tmp_path / "acc.log").read_text().strip() == expected
