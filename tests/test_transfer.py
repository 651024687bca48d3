"""Transfer learning: the per-class split, classifier replacement, missing pretrained weights,
and one short end-to-end run (scripts/run_transfer.sh -> eval -> picture -> notebook)."""
import json
import os
import re
import subprocess
import sys
from collections import Counter

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from PIL import Image

from helpers import fill_deterministic, run_entry
from predict_grid import HEADER_HEIGHT, PAD, TEXT_HEIGHT, grid_size, pick_images
from src.checkpoint_utils import CheckpointError, read_recorded, resolve_resume, restore_training_state
from src.dataset import (IMG_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, DatasetError, create_flower_dataset,
                         split_files, split_indices)
from src.model_utils.config import load_config
from src.model_utils.errors import UsageError
from src.shufflenetv1 import ShuffleNetV1
from src.synthetic import make_shapes_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "transfer_config.yaml")


def _solid_folder(root, counts, size=40):
    """ROOT/<class>/<image>.png, each image one colour of its own; returns {path: colour}."""
    colours, k = {}, 0
    for name, count in counts.items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            k += 1
            colour = (k * 37 % 256, k * 91 % 256, (k * 53 + 40) % 256)
            path = os.path.join(root, name, f"img_{i:03d}.png")
            Image.new("RGB", (size, size), colour).save(path)
            colours[path] = colour
    return colours


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("split") / "photos")
    colours = _solid_folder(root, {"daisy": 10, "roses": 7, "tulips": 2, "Sunflowers": 3})
    return root, colours


# ---- the split ----

def test_split_sizes_per_class(folder):
    root, colours = folder
    train_files, val_files, names = split_files(root, seed=1)
    assert names == ["Sunflowers", "daisy", "roses", "tulips"]  # sorted as MindSpore labels them
    per_train = Counter(label for _, label in train_files)
    per_val = Counter(label for _, label in val_files)
    # round(n * 0.8), at least one image on each side
    assert [per_train[i] for i in range(4)] == [2, 8, 6, 1]
    assert [per_val[i] for i in range(4)] == [1, 2, 1, 1]
    for path, label in train_files + val_files:
        assert os.path.basename(os.path.dirname(path)) == names[label]
    half_train, half_val, _ = split_files(root, seed=1, train_ratio=0.5)
    assert len(half_train) == 2 + 5 + 4 + 1 and len(half_val) == 1 + 5 + 3 + 1  # rounded half up, min 1


def test_split_is_disjoint_complete_and_reproducible(folder):
    root, colours = folder
    train_files, val_files, _ = split_files(root, seed=1)
    train_paths, val_paths = {p for p, _ in train_files}, {p for p, _ in val_files}
    assert not train_paths & val_paths
    assert train_paths | val_paths == set(colours)
    assert split_files(root, seed=1) == (train_files, val_files, split_files(root, seed=1)[2])
    daisy_val = lambda seed: {p for p, _ in split_files(root, seed=seed)[1] if "daisy" in p}  # noqa: E731
    assert any(daisy_val(seed) != daisy_val(1) for seed in (2, 3, 4))  # the seed matters


def test_a_new_class_leaves_the_split_of_the_others_alone(tmp_path):
    root = str(tmp_path / "photos")
    _solid_folder(root, {"a": 12, "b": 9})
    before = split_files(root, seed=5)[1]
    _solid_folder(root, {"c": 6})
    after = split_files(root, seed=5)[1]
    assert [p for p, _ in after if "/c/" not in p] == [p for p, _ in before]


def test_split_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        split_files(str(tmp_path / "nowhere"))
    root = str(tmp_path / "photos")
    _solid_folder(root, {"daisy": 5, "roses": 1})
    with pytest.raises(DatasetError, match=r"roses.*1 image\).*at least 2 images"):
        split_files(root)
    os.makedirs(os.path.join(root, "empty"))
    with pytest.raises(DatasetError, match="empty.*0 images"):
        split_files(root)
    with pytest.raises(DatasetError, match="train_ratio=1.0"):
        split_files(root, train_ratio=1.0)


def test_mindspore_reads_the_files_of_the_split(tmp_path):
    """The sampler indices pick exactly the split's files from ImageFolderDataset (its file order)."""
    root = str(tmp_path / "photos")
    _solid_folder(root, {"b_cls": 6, "a_cls": 4, "C": 3})
    # names ImageFolderDataset must order the same way as list_images: case, digits, dots
    for name in ("B.png", "a10.PNG", "a9.png", ".hidden.png", "_x.jpg"):
        Image.new("RGB", (8, 8), (len(name) * 20, 3, 7)).save(os.path.join(root, "b_cls", name),
                                                             format="JPEG" if name.endswith("jpg") else "PNG")
    with open(os.path.join(root, "b_cls", "notes.txt"), "w", encoding="utf-8") as fh:
        fh.write("not an image")
    os.makedirs(os.path.join(root, "a_cls", "nested"))
    Image.new("RGB", (8, 8)).save(os.path.join(root, "a_cls", "nested", "deep.png"))
    train_files, val_files, names = split_files(root, seed=3)
    train_idx, val_idx, _ = split_indices(root, seed=3)
    for indices, files in ((train_idx, train_files), (val_idx, val_files)):
        data = ds.ImageFolderDataset(root, sampler=ds.SubsetSampler(indices), extensions=list(IMG_EXTENSIONS),
                                     class_indexing={n: i for i, n in enumerate(names)})
        rows = list(data.create_tuple_iterator(output_numpy=True))
        assert len(rows) == len(files)
        for (raw, label), (path, want_label) in zip(rows, files):
            with open(path, "rb") as fh:
                assert raw.tobytes() == fh.read(), path
            assert int(label) == want_label


def test_shards_are_equal_and_disjoint(folder):
    root, _ = folder
    full, _, _ = split_indices(root, seed=1)
    shards = [split_indices(root, seed=1, num_shards=3, shard_id=k)[0] for k in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(full) // 3
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
    assert set().union(*shards) <= set(full)


def test_datasets_batch_and_transform_the_split(folder):
    root, colours = folder
    train_ds, eval_ds, names = create_flower_dataset(root, batch_size=5, eval_batch_size=2, image_size=32,
                                                     num_parallel_workers=1)
    train_files, val_files, _ = split_files(root, seed=1)
    assert train_ds.get_dataset_size() == len(train_files) // 5  # the last partial batch is dropped
    shapes, labels = [], []
    for image, label in eval_ds.create_tuple_iterator(output_numpy=True):
        shapes.append(image.shape)
        pixels = image.transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
        labels += [(tuple(int(round(v)) for v in px.reshape(-1, 3).mean(0)), int(y)) for px, y in zip(pixels, label)]
    assert shapes[0] == (2, 3, 32, 32) and sum(s[0] for s in shapes) == len(val_files)  # every image scored
    assert labels == [(colours[p], y) for p, y in val_files]  # the validation images, in order, unaugmented
    one_by_one, _, _ = create_flower_dataset(root, batch_size=1, image_size=32, num_parallel_workers=1)
    seen = Counter(int(y[0]) for _, y in one_by_one.create_tuple_iterator(output_numpy=True))
    assert seen == Counter(y for _, y in train_files)


def test_the_split_as_a_command_writes_it_as_two_folders(folder, tmp_path):
    root, colours = folder
    done = run_entry("transfer_dataset_process.py", ["--dataset_path", root, "--output_path", str(tmp_path / "split")],
                     tmp_path)
    assert "   1 daisy: 8 training, 2 validation" in done.stdout
    assert "4 classes: 17 training and 5 validation images (seed 1, train_ratio 0.8)" in done.stdout
    train_files, val_files, names = split_files(root, seed=1)
    for part, files in (("train", train_files), ("val", val_files)):
        written = sorted(os.path.relpath(os.path.join(dp, f), tmp_path / "split" / part)
                         for dp, _, fs in os.walk(tmp_path / "split" / part) for f in fs)
        assert written == sorted(os.path.relpath(p, root) for p, _ in files)
    again = run_entry("transfer_dataset_process.py", ["--dataset_path", root, "--output_path",
                                                      str(tmp_path / "split")], tmp_path, check=False)
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr


# ---- pretrained weights ----

def test_pretrained_classifier_is_replaced_and_reported(tmp_path, capsys):
    src = fill_deterministic(ShuffleNetV1(model_size="0.5x", group=3, num_classes=10), seed=1)
    path = str(tmp_path / "imagenet10.ckpt")
    ms.save_checkpoint(src, path)
    net = ShuffleNetV1(model_size="0.5x", group=3, num_classes=3)
    fresh = {n: p.asnumpy().copy() for n, p in net.parameters_and_names() if n.startswith("classifier.")}
    state = restore_training_state(net, path, steps_per_epoch=5)
    assert (state.start_step, state.optimizer_state, state.best_top1) == (0, {}, -1.0)  # weights only: a new run
    out = capsys.readouterr().out
    for name in ("classifier.weight", "classifier.bias"):
        assert re.search(rf"not loaded from .*imagenet10.ckpt: {name}: the checkpoint has 10 classes, "
                         r"the network 3", out), out
    source = dict(src.parameters_and_names())
    loaded = 0
    for name, param in net.parameters_and_names():
        if name.startswith("classifier."):
            np.testing.assert_array_equal(param.asnumpy(), fresh[name])
        else:
            np.testing.assert_array_equal(param.asnumpy(), source[name].asnumpy(), err_msg=name)
            loaded += 1
    assert f"initialised the network from {path} ({loaded} parameters)" in out


def test_a_mismatch_other_than_the_class_count_is_an_error(tmp_path):
    path = str(tmp_path / "g8.ckpt")
    ms.save_checkpoint(ShuffleNetV1(model_size="0.5x", group=8, num_classes=10), path)
    with pytest.raises(CheckpointError, match="does not fit this network"):
        restore_training_state(ShuffleNetV1(model_size="0.5x", group=3, num_classes=3), path, 5)


def test_missing_configured_pretrained_file_means_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./pretrained here
    cfg = load_config(CONFIG)
    assert cfg.resume == "./pretrained/shufflenetv1_imagenet2012.ckpt"
    assert resolve_resume(cfg, str(tmp_path)) == ""
    out = capsys.readouterr().out
    assert "does not exist: training starts FROM SCRATCH" in out and "shufflenetv1_imagenet2012" in out
    # The same file present: it is used.
    os.makedirs("pretrained")
    ms.save_checkpoint(ShuffleNetV1(model_size="0.5x", group=3, num_classes=10), cfg.resume)
    assert resolve_resume(cfg, str(tmp_path)) == cfg.resume
    # A path typed on the command line must exist.
    cfg = load_config(CONFIG, {"resume": str(tmp_path / "typo.ckpt")})
    with pytest.raises(UsageError, match="typo.ckpt' is not a file"):
        resolve_resume(cfg, str(tmp_path))


# ---- the picture's layout ----

def test_grid_layout_and_picking():
    assert grid_size(16, 4, 160) == (4 * (160 + 2 * PAD), HEADER_HEIGHT + 4 * (160 + TEXT_HEIGHT + 2 * PAD))
    assert grid_size(5, 3, 64) == (228, 30 + 2 * 112)
    files = [(f"a{i}", 0) for i in range(5)] + [(f"b{i}", 1) for i in range(2)] + [("c0", 2)]
    assert pick_images(files, 6) == [("a0", 0), ("b0", 1), ("c0", 2), ("a1", 0), ("b1", 1), ("a2", 0)]
    assert len(pick_images(files, 50)) == 8


# ---- end to end: scripts/run_transfer.sh, eval, the picture, the notebook ----

NET = ["--num_classes", "3", "--model_size", "0.5x", "--image_size", "48", "--num_parallel_workers", "1"]
EPOCHS = 20
_LINE = re.compile(r"^epoch (\d+): val Top_1_Acc ([0-9.]+), best ([0-9.]+)( \(saved .*\))?$", re.MULTILINE)


def same_graphs(script, name):
    """Environment for runs of ``script`` that compile the same graphs (helpers.run_entry's compile cache)."""
    return {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": os.path.join(
        os.environ["SHUFFLENET_TEST_COMPILE_CACHE"], f"{script}-{name}")}


def _run(cmd, cwd, check=True, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """3 texture classes x 100 images, one flower_photos-style folder (80 train / 20 val per class)."""
    root = tmp_path_factory.mktemp("textures")
    return make_shapes_dataset(str(root), num_classes=3, train_per_class=100, val_per_class=1, image_size=64,
                               seed=0)[0]


@pytest.fixture(scope="module")
def transfer_run(textures, tmp_path_factory):
    """scripts/run_transfer.sh with transfer_config.yaml's recipe, in a folder without ./pretrained."""
    work = tmp_path_factory.mktemp("run")
    proc = _run(["bash", os.path.join(ROOT, "scripts", "run_transfer.sh"), textures, *NET,
                 "--epoch_size", str(EPOCHS), "--batch_size", "24", "--keep_checkpoint_max", "1"], work,
                env={"LOG": str(work / "transfer_train.log")})
    return work, proc.stdout


@pytest.mark.slow
def test_transfer_run_learns_and_keeps_the_best_epoch(transfer_run):
    work, stdout = transfer_run
    assert "does not exist: training starts FROM SCRATCH" in stdout
    assert "no resume checkpoint: training from scratch" in stdout
    banner, rest = stdout.split("\n", 1)
    assert banner == f"transfer learning on CPU with {CONFIG}; log: {work / 'transfer_train.log'}"
    assert (work / "transfer_train.log").read_text(encoding="utf-8") == rest  # the script's log copy
    lines = [(int(e), float(top1), float(best), bool(saved)) for e, top1, best, saved in _LINE.findall(stdout)]
    assert [e for e, *_ in lines] == list(range(1, EPOCHS + 1))
    top1s = [t for _, t, _, _ in lines]
    best_epoch = 1 + top1s.index(max(top1s))
    assert max(top1s) >= 0.6, f"validation top-1 never clearly above chance (1/3): {top1s}"
    # "best" is the running maximum, and a save is announced exactly when it improves
    assert [b for *_, b, _ in lines] == pytest.approx(list(np.maximum.accumulate(top1s)), abs=1e-4)
    assert max(e for e, *_, saved in lines if saved) == best_epoch
    records = [json.loads(line) for line in (work / "transfer_output" / "train_log.jsonl").open(encoding="utf-8")]
    assert [r["val_top1"] for r in records] == pytest.approx(top1s, abs=1e-4)
    params = ms.load_checkpoint(str(work / "transfer_output" / "shufflenetv1_transfer_best.ckpt"))
    assert int(params["epoch_num"].asnumpy()) == best_epoch
    assert float(params["val_top1"].asnumpy()) == pytest.approx(records[best_epoch - 1]["val_top1"], abs=1e-6)
    # the variant and the options its weights need travel with the best checkpoint too
    assert read_recorded(params) == {"model_size": "0.5x", "group": 3, "num_classes": 3, "pool_pad": "same",
                                     "input_format": "rgb_normalized", "image_size": 48}


@pytest.mark.slow
def test_eval_of_the_best_checkpoint_reports_its_top1(transfer_run, textures):
    work, _ = transfer_run
    best = ms.load_checkpoint(str(work / "transfer_output" / "shufflenetv1_transfer_best.ckpt"))
    want = float(best["val_top1"].asnumpy())
    # eval.py's default checkpoint for transfer learning: save_ckpt_path/shufflenetv1_transfer_best.ckpt; its
    # variant (0.5x, 3 classes) from the checkpoint, not from transfer_config.yaml (2.0x, 5 classes)
    same = same_graphs("eval.py", "transfer_best")  # both evaluate the best checkpoint as configured
    direct = _run([sys.executable, os.path.join(ROOT, "eval.py"), "--config_path", CONFIG, "--dataset_path",
                   textures, "--image_size", "48"], work, env=same)
    assert "using model_size=0.5x recorded in" in direct.stdout and "using num_classes=3" in direct.stdout
    scripted = _run(["bash", os.path.join(ROOT, "scripts", "run_transfer_eval.sh"), textures, "--image_size", "48"],
                    work, env=same)
    for proc in (direct, scripted):
        match = re.search(r"'Top_1_Acc': ([0-9.]+).*ckpt:'(.+?)'", proc.stdout)
        assert match, proc.stdout
        assert float(match.group(1)) == pytest.approx(want, abs=1e-6)
        assert match.group(2) == str(work / "transfer_output" / "shufflenetv1_transfer_best.ckpt")


@pytest.mark.slow
def test_picture_of_predictions(transfer_run, textures):
    work, _ = transfer_run
    same = same_graphs("predict_grid.py", "transfer_grid")  # the same network and batches, another picture
    proc = _run([sys.executable, os.path.join(ROOT, "predict_grid.py"), "--config_path", CONFIG, "--dataset_path",
                 textures, "--image_size", "48", "--output", "grid.png", "--num_images", "10", "--thumb_size", "96"],
                work, env=same)
    match = re.search(r"wrote (.+grid\.png): 10 validation images, (\d+) predicted right", proc.stdout)
    assert match, proc.stdout
    with Image.open(work / "grid.png") as img:
        assert img.format == "PNG" and img.size == grid_size(10, 4, 96) == (432, 30 + 3 * 144)
        pixels = np.asarray(img.convert("RGB"))
    # one green or red frame per image: red ones exactly for the wrong predictions
    frames = [tuple(pixels[HEADER_HEIGHT + (i // 4) * 144 + PAD - 2, (i % 4) * 108 + PAD - 2]) for i in range(10)]
    assert sum(f == (215, 25, 30) for f in frames) == 10 - int(match.group(2))
    assert sum(f == (30, 150, 60) for f in frames) == int(match.group(2))
    # the format follows the name: a JPEG for .jpg, and a name of another kind refused before any work
    jpeg = _run([sys.executable, os.path.join(ROOT, "predict_grid.py"), "--config_path", CONFIG, "--dataset_path",
                 textures, "--image_size", "48", "--output", "grid.jpg", "--num_images", "10"], work, env=same)
    with Image.open(work / "grid.jpg") as img:
        assert img.format == "JPEG", jpeg.stdout
    gif = _run([sys.executable, os.path.join(ROOT, "predict_grid.py"), "--config_path", CONFIG, "--dataset_path",
                textures, "--output", "grid.gif"], work, check=False)
    assert gif.returncode == 2 and "--output grid.gif: write a .png or a .jpg file" in gif.stderr
    assert not (work / "grid.gif").exists()


def test_scripts_check_their_arguments(tmp_path):
    script = os.path.join(ROOT, "scripts", "run_transfer.sh")
    proc = _run(["bash", script], tmp_path, check=False)
    assert proc.returncode == 2 and "Usage: bash scripts/run_transfer.sh DATASET_PATH" in proc.stderr
    proc = _run(["bash", script, "no_photos"], tmp_path, check=False)
    assert proc.returncode == 2 and f"error: DATASET_PATH={tmp_path}/no_photos is not a directory" in proc.stderr
    proc = _run(["bash", script, str(tmp_path), "missing.ckpt"], tmp_path, check=False)
    assert proc.returncode == 2 and f"error: PRETRAINED_CKPT={tmp_path}/missing.ckpt is not a file" in proc.stderr
    evaluate = os.path.join(ROOT, "scripts", "run_transfer_eval.sh")
    proc = _run(["bash", evaluate], tmp_path, check=False)
    assert proc.returncode == 2 and "Usage: bash scripts/run_transfer_eval.sh DATASET_PATH [CKPT]" in proc.stderr
    proc = _run(["bash", evaluate, str(tmp_path)], tmp_path, check=False)
    assert proc.returncode == 2 and \
        f"error: CKPT={tmp_path}/transfer_output/shufflenetv1_transfer_best.ckpt is not a file" in proc.stderr
    # a failing train.py makes the script fail too, naming its log
    os.makedirs(tmp_path / "photos" / "daisy")
    proc = _run(["bash", script, str(tmp_path / "photos"), "", "--mode", "PYNATIVE"], tmp_path, check=False)
    assert proc.returncode == 1 and "error: train.py failed (exit code 1); see" in proc.stderr
    assert "cannot be split" in proc.stdout


_NOTEBOOK_RUNNER = """
import json, sys
nb = json.load(open(sys.argv[1], encoding="utf-8"))
overrides = json.loads(sys.argv[2])
cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
ns = {"__name__": "__main__"}
exec(compile(cells[0], "<cell 0: settings>", "exec"), ns)
ns.update(overrides)  # small data, few epochs, output in the test folder
for i, source in enumerate(cells[1:], 1):
    exec(compile(source, f"<cell {i}>", "exec"), ns)
print("NOTEBOOK_DONE", json.dumps({"dataset": ns["DATASET_PATH"], "grid": ns["GRID"], "best": ns["BEST"]}))
"""


@pytest.mark.slow
def test_quick_start_notebook_runs(tmp_path):
    """Every code cell of mindspore_quick_start.ipynb, in order, on tiny generated data (no jupyter needed)."""
    with open(os.path.join(ROOT, "mindspore_quick_start.ipynb"), encoding="utf-8") as fh:
        notebook = json.load(fh)
    assert notebook["nbformat"] == 4
    assert all(not c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code")  # shipped clean
    overrides = {"REPO": ROOT, "OUTPUT": str(tmp_path / "out"), "DATASET_PATH": str(tmp_path / "no_photos"),
                 "PRETRAINED": str(tmp_path / "no.ckpt"), "MODEL_SIZE": "0.5x", "IMAGE_SIZE": 32, "EPOCHS": 1,
                 "BATCH_SIZE": 8, "TEXTURE_IMAGES_PER_CLASS": 10, "NUM_IMAGES": 4}
    proc = _run([sys.executable, "-c", _NOTEBOOK_RUNNER, os.path.join(ROOT, "mindspore_quick_start.ipynb"),
                 json.dumps(overrides)], tmp_path)
    result = json.loads(proc.stdout.split("NOTEBOOK_DONE", 1)[1])
    assert result["dataset"] == str(tmp_path / "out" / "textures" / "train")  # made by the notebook
    assert "3 classes, 24 training and 6 validation images" in proc.stdout
    assert "no pretrained checkpoint: training from scratch" in proc.stdout
    assert re.search(r"result:\{'Loss': .*'Top_1_Acc': ", proc.stdout)
    with Image.open(result["grid"]) as img:
        assert img.size == grid_size(4, 2, 160)
    assert result["best"]["epoch"] == 1
