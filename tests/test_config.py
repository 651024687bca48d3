"""Config: one schema (types, allowed values, help), YAML files parse, precedence, one validation of the
whole config, the original model zoo's keys, --help showing what applies."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

from src.model_utils import config as config_module
from src.model_utils.config import (DEFAULTS, LEGACY_KEYS, SCHEMA, ConfigError, get_config, load_config,
                                    save_config, validate)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAMLS = sorted(glob.glob(os.path.join(ROOT, "*.yaml")))
ORIGINAL = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "original_zoo", "*.yaml")))


def test_the_three_configs_exist():
    names = {os.path.basename(p) for p in YAMLS}
    assert {"default_config.yaml", "gpu_default_config.yaml", "transfer_config.yaml"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_every_yaml_parses_with_known_keys_and_types(path):
    cfg = load_config(path)
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    for key, value in raw.items():
        assert cfg[key] == value


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_every_key_has_a_comment(path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                assert "#" in line, f"{os.path.basename(path)}: no comment on {line.strip()!r}"


def test_recipes():
    ascend = load_config(os.path.join(ROOT, "default_config.yaml"))
    assert (ascend.device_target, ascend.amp_level, ascend.batch_size, ascend.epoch_size) == ("Ascend", "O3", 128, 250)
    assert (ascend.lr_max, ascend.warmup_epochs, ascend.lr_decay_mode) == (0.5, 4, "cosine")
    gpu = load_config(os.path.join(ROOT, "gpu_default_config.yaml"))
    assert (gpu.device_target, gpu.amp_level) == ("GPU", "O0")
    transfer = load_config(os.path.join(ROOT, "transfer_config.yaml"))
    assert (transfer.device_target, transfer.num_classes, transfer.epoch_size, transfer.amp_level) == ("CPU", 5, 100, "O0")
    assert transfer.resume and transfer.dataset_path and transfer.is_transfer
    assert not ascend.is_transfer and not gpu.is_transfer


def test_precedence_command_line_over_yaml_over_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 16\nlr_max: 0.2\n")
    cfg = get_config(["--config_path", str(path), "--lr_max", "0.3", "--is_distributed=true"])
    assert cfg.batch_size == 16            # YAML over default
    assert cfg.lr_max == 0.3               # command line over YAML
    assert cfg.is_distributed is True      # command line over default
    assert cfg.momentum == DEFAULTS["momentum"]  # default
    assert cfg.config_path == str(path)


def test_int_in_yaml_is_accepted_for_a_float_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr_max: 1\n")
    assert load_config(str(path)).lr_max == 1.0


@pytest.mark.parametrize("argv,message", [
    (["--bach_size", "3"], "unknown key 'bach_size' in the command line; did you mean 'batch_size'?"),
    (["--batch_size", "three"], "batch_size='three' in the command line is not a valid int"),
    (["--is_distributed", "maybe"], "is_distributed='maybe'"),
    (["--batch_size"], "option --batch_size needs a value"),
    (["train"], "unexpected argument 'train'"),
])
def test_bad_command_line_exits_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        get_config(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("text,message", [
    ("epoch_sise: 3\n", "unknown key 'epoch_sise' in config file"),
    ("epoch_size: three\n", "epoch_size='three'"),
    ("save_checkpoint: 1\n", "should be of type bool, not int"),
    ("- a\n- b\n", "must hold a mapping"),
    ("a: [\n", "is not valid YAML"),
])
def test_bad_yaml_is_rejected(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert message in str(info.value)


def test_unknown_yaml_key_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'epoch_size'"):
        load_config(None, {"epochsize": "2"})


def test_missing_config_file(capsys):
    with pytest.raises(SystemExit) as info:
        get_config(["--config_path", "/nonexistent/x.yaml"])
    assert info.value.code == 2
    assert "'/nonexistent/x.yaml' does not exist" in capsys.readouterr().err


def test_saved_config_loads_back_identically(tmp_path):
    cfg = get_config(["--config_path", os.path.join(ROOT, "transfer_config.yaml"), "--batch_size", "7"])
    path = save_config(cfg, str(tmp_path / "run"))
    again = load_config(path)
    assert {k: again[k] for k in DEFAULTS} == {k: cfg[k] for k in DEFAULTS}


def test_no_parsing_at_import_time():
    # Importing the config module with junk argv must not exit or parse anything.
    code = "import sys; sys.argv=['x','--junk']; import src.model_utils.config as c; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# ---- one schema, one validation ----

def test_every_key_has_a_type_help_and_group_and_the_fixed_sets_match_the_code():
    from src import dataset, lr_generator, shufflenetv1
    from src.fast_ops import conv
    for name, key in SCHEMA.items():
        assert key.help and key.group and isinstance(key.default, key.type), name
    assert SCHEMA["model_size"].choices == shufflenetv1.MODEL_SIZES
    assert SCHEMA["group"].choices == shufflenetv1.GROUPS
    assert SCHEMA["pool_pad"].choices == shufflenetv1.POOL_PADS
    assert SCHEMA["input_format"].choices == dataset.INPUT_FORMATS
    assert SCHEMA["lr_decay_mode"].choices == lr_generator.LR_DECAY_MODES
    assert SCHEMA["conv_impl"].choices == conv.CONV_IMPLS


@pytest.mark.parametrize("overrides,message", [
    ({"model_size": "3.0x"}, "model_size='3.0x' is not supported; choose one of ['0.5x', '1.0x', '1.5x', '2.0x']"),
    ({"group": "4"}, "group=4 is not supported; choose one of [3, 8]"),
    ({"amp_level": "O4"}, "amp_level='O4' is not supported"),
    ({"device_target": "TPU"}, "device_target='TPU' is not supported; choose one of ['Ascend', 'GPU', 'CPU']"),
    ({"mode": "EAGER"}, "mode='EAGER' is not supported"),
    ({"lr_decay_mode": "exp"}, "lr_decay_mode='exp' is not supported"),
    ({"image_size": "16"}, "image_size=16 must be >= 32"),
    ({"batch_size": "0"}, "batch_size=0 must be >= 1"),
    ({"label_smooth_factor": "1.5"}, "label_smooth_factor=1.5 must be 0.0 to 0.999"),
    ({"warmup_epochs": "9", "epoch_size": "3"}, "warmup_epochs=9 must be at most epoch_size=3"),
    ({"num_parallel_workers": "4096"}, "exceeds this machine's"),
    ({"save_checkpoint_steps": "-1"}, "save_checkpoint_steps=-1 must be >= 0"),
    ({"is_transfer": "True", "train_dataset_path": "x"}, "would be ignored: pass one of them"),
    ({"dataset_path": "photos"}, "is the folder of transfer learning: pass --is_transfer True"),
])
def test_a_bad_value_is_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(load_config(None, overrides))
    assert message in str(info.value)


def test_choices_are_matched_ignoring_case():
    cfg = load_config(None, {"device_target": "cpu", "file_format": "onnx", "amp_level": "o3"})
    assert (cfg.device_target, cfg.file_format, cfg.amp_level) == ("CPU", "ONNX", "O3")


def test_what_each_entry_point_needs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="no train_dataset_path given: pass --train_dataset_path"):
        validate(load_config(None), "train")
    with pytest.raises(ConfigError, match=r"train_dataset_path='.*nowhere' is not a directory"):
        validate(load_config(None, {"train_dataset_path": str(tmp_path / "nowhere")}), "train")
    validate(load_config(None, {"train_dataset_path": str(data)}), "train")
    with pytest.raises(ConfigError, match="no dataset_path given"):
        validate(load_config(None, {"is_transfer": "True"}), "train")
    with pytest.raises(ConfigError, match="no eval_dataset_path given"):
        validate(load_config(None), "eval")
    with pytest.raises(ConfigError, match=r"ckpt_path='x\.ckpt' is not a file"):
        validate(load_config(None, {"eval_dataset_path": str(data), "ckpt_path": "x.ckpt"}), "eval")
    with pytest.raises(ConfigError, match="file_format=AIR needs an Ascend device"):
        validate(load_config(None, {"file_format": "AIR"}), "export")
    with pytest.raises(ConfigError, match=r"ends with \.mindir, but file_format=ONNX"):
        validate(load_config(None, {"file_format": "ONNX", "file_name": "x.mindir"}), "export")
    with pytest.raises(ConfigError, match="no checkpoint given"):
        validate(load_config(None), "export")
    # on ModelArts the paths exist only after the copies: checked then (src/model_utils/moxing_adapter.py)
    validate(load_config(None, {"enable_modelarts": "True"}), "train", check_paths=False)


def test_which_keys_the_command_line_gave(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 16\n")
    cfg = load_config(str(path), {"lr_max": "0.3"})
    assert cfg.from_command_line("lr_max") and not cfg.from_command_line("batch_size")


# ---- the original model zoo's configs ----

@pytest.mark.parametrize("path", ORIGINAL, ids=os.path.basename)
def test_an_original_model_zoo_config_loads_with_one_note_per_old_key(path, capsys):
    cfg = get_config(["--config_path", path])
    out = capsys.readouterr().out
    with open(path, encoding="utf-8") as fh:
        original = next(yaml.safe_load_all(fh))  # the values; the second document holds help texts
    old = [key for key in original if key in LEGACY_KEYS]
    assert old and all(out.count(f"note: '{key}' in config file") == 1 for key in old), out
    assert cfg.lr_decay_mode == original["decay_method"]
    assert "note: 'decay_method' in config file" in out and "lr_decay_mode" in out
    for key, value in original.items():
        if key not in LEGACY_KEYS:
            assert cfg[key] == value, key
    if "enable_profiling" in original:
        assert "'enable_profiling' in config file" in out and "ignored" in out


def test_a_renamed_key_next_to_its_new_name_uses_the_new_one(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("decay_method: linear\nlr_decay_mode: steps\n")
    assert load_config(str(path), notes=[]).lr_decay_mode == "steps"
    notes = []
    load_config(str(path), notes=notes)
    assert notes == [f"note: 'decay_method' in config file '{path}' is the original model zoo's name of "
                     "lr_decay_mode; lr_decay_mode is also given there and is used"]
    assert get_config(["--decay_method", "linear"]).lr_decay_mode == "linear"  # on the command line too


def test_a_misspelt_key_is_still_an_error_naming_the_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("decay_methd: cosine\n")
    with pytest.raises(ConfigError, match="unknown key 'decay_methd' in config file .*did you mean 'decay_method'"):
        load_config(str(path))


# ---- --help ----

def test_help_shows_the_values_of_the_config_that_applies(capsys):
    with pytest.raises(SystemExit) as info:
        get_config(["--config_path", os.path.join(ROOT, "default_config.yaml"), "--batch_size", "8", "--help"],
                   prog="train.py")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python train.py [--config_path YAML] [--key value ...]" in out
    assert os.path.join(ROOT, "default_config.yaml") in out
    assert "  --device_target Ascend\n" in out and "  --amp_level O3\n" in out  # the YAML's, not the built-in
    assert "  --batch_size 8  (command line)" in out
    assert "one of: 0.5x, 1.0x, 1.5x, 2.0x" in out and "CPU always trains in fp32" in out
    for group in ("device and run mode:", "data:", "network:", "training:", "checkpoints:", "export:"):
        assert group in out
    assert "decay_method (lr_decay_mode)" in out


def test_help_of_an_entry_point_uses_its_config_path(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config_path",
                           os.path.join(ROOT, "transfer_config.yaml"), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "  --is_transfer True\n" in done.stdout and "  --num_classes 5\n" in done.stdout
    assert "  --dataset_path ./flower_photos\n" in done.stdout
