"""Config: YAML files parse, precedence, unknown keys and bad types are rejected."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

from src.model_utils.config import DEFAULTS, ConfigError, get_config, load_config, save_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAMLS = sorted(glob.glob(os.path.join(ROOT, "*.yaml")))


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
    assert transfer.resume and transfer.dataset_path


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
