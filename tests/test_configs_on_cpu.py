"""Every shipped YAML (and the original model zoo's Ascend one) trains one epoch, evaluates and exports
MINDIR on CPU as shipped: the command lines give only what a user must (device, data and output paths)
and size knobs for speed (model_size, image_size, batch_size, epoch_size, warmup_epochs); never
amp_level or mode (default_config.yaml's O3, the original's O3, GRAPH mode all as written)."""
import os

import pytest

from helpers import ROOT, run_entry
from src.checkpoint_utils import list_checkpoints
from src.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow
SIZE = ["--model_size", "0.5x", "--image_size", "32", "--batch_size", "4", "--epoch_size", "1",
        "--warmup_epochs", "0"]
CONFIGS = {name: os.path.join(ROOT, name) for name in ("default_config.yaml", "gpu_default_config.yaml",
                                                      "transfer_config.yaml")}
CONFIGS["original_zoo/default_config.yaml"] = os.path.join(ROOT, "tests", "data", "original_zoo",
                                                           "default_config.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes_dataset(str(tmp_path_factory.mktemp("data")), num_classes=3, train_per_class=4,
                               val_per_class=2, image_size=40)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_config_trains_evaluates_and_exports_on_cpu(name, data, tmp_path):
    config = CONFIGS[name]
    transfer = name == "transfer_config.yaml"
    base = ["--config_path", config, "--device_target", "CPU"]
    data_args = ["--dataset_path", data[0]] if transfer else ["--train_dataset_path", data[0]]
    trained = run_entry("train.py", base + data_args + ["--save_ckpt_path", str(tmp_path / "out")] + SIZE, tmp_path)
    if name in ("default_config.yaml", "original_zoo/default_config.yaml"):  # O3 as shipped: fp32 on CPU, said once
        assert trained.stdout.count("note: amp_level=O3 is for GPU/Ascend") == 1
    assert "on CPU (amp_level O0)" in trained.stdout and "training done." in trained.stdout
    if name.startswith("original_zoo"):  # the original's renamed and dropped keys: one note each
        for key in ("decay_method", "enable_profiling", "checkpoint_path", "onnx_path"):
            assert trained.stdout.count(f"note: '{key}' in config file") == 1, key
    last = list_checkpoints(str(tmp_path / "out"))[-1][2]
    if name.startswith("original_zoo"):
        return  # its eval and export run the network of that checkpoint as default_config.yaml's do

    eval_data = ["--dataset_path", data[0]] if transfer else ["--eval_dataset_path", data[1]]
    # (batch 6: the 6 validation images in one batch, one graph to compile)
    evaluated = run_entry("eval.py", base + eval_data + ["--ckpt_path", last, "--image_size", "32",
                                                         "--batch_size", "6"], tmp_path)
    assert "result:{'Loss': " in evaluated.stdout and "'Top_1_Acc': " in evaluated.stdout

    exported = run_entry("export.py", base + ["--ckpt_path", last, "--image_size", "32", "--batch_size", "1",
                                              "--file_name", str(tmp_path / "net")], tmp_path)
    assert f"exported {tmp_path / 'net.mindir'}: MINDIR" in exported.stdout
    assert (tmp_path / "net.mindir").stat().st_size > 100_000
