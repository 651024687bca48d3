"""Configuration: built-in defaults < YAML file < command line.

``get_config(argv)`` is the only entry point; nothing is parsed at import time.
Every key of ``DEFAULTS`` may appear in the YAML file and on the command line as
``--key value``. The type of a key is the type of its built-in default, so a
YAML or command-line value of another type is rejected, as is any key that is
not in ``DEFAULTS`` (the message names the closest valid key).
"""
import difflib
import os
import sys

import yaml

__all__ = ["Config", "ConfigError", "DEFAULTS", "get_config", "load_config", "save_config"]

# The one table of valid keys, their types (the type of the default) and defaults.
# The YAML files carry a one-line comment per key.
DEFAULTS = {
    # device and run mode
    "device_target": "CPU",
    "device_id": 0,
    "mode": "GRAPH",
    "is_distributed": False,
    "seed": 1,
    # data
    "train_dataset_path": "",
    "eval_dataset_path": "",
    "dataset_path": "",
    "image_size": 224,
    "batch_size": 128,
    "eval_batch_size": 0,
    "num_parallel_workers": 0,
    "input_format": "rgb_normalized",
    # network
    "model_size": "2.0x",
    "group": 3,
    "num_classes": 1000,
    "conv_impl": "auto",
    "pool_pad": "same",
    # training
    "epoch_size": 250,
    "label_smooth_factor": 0.1,
    "lr_decay_mode": "cosine",
    "lr_init": 0.0,
    "lr_max": 0.5,
    "lr_end": 0.0,
    "warmup_epochs": 4,
    "loss_scale": 1024,
    "weight_decay": 0.00004,
    "momentum": 0.9,
    "amp_level": "O0",
    "freeze_backbone": False,
    "log_interval": 0,
    "eval_interval": 0,
    # checkpoints
    "resume": "",
    "ckpt_path": "",
    "save_ckpt_path": "./output",
    "save_checkpoint": True,
    "save_checkpoint_epochs": 1,
    "keep_checkpoint_max": 5,
    # export
    "file_name": "shufflenetv1",
    "file_format": "MINDIR",
    # ModelArts
    "enable_modelarts": False,
    "data_url": "",
    "train_url": "",
    "checkpoint_url": "",
    "data_path": "/cache/data",
    "output_path": "/cache/train",
    "load_path": "/cache/checkpoint_path",
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says which and why."""


class Config(dict):
    """A dict whose keys are also attributes: ``config.batch_size``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name, value):
        self[name] = value


def _closest(key):
    match = difflib.get_close_matches(key, DEFAULTS.keys(), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _check_key(key, where):
    if key not in DEFAULTS:
        raise ConfigError(f"unknown key '{key}' in {where}{_closest(key)}")


def _convert(key, value, where):
    """Coerce ``value`` to the type of ``DEFAULTS[key]``; strings come from the command line."""
    want = type(DEFAULTS[key])
    if isinstance(value, str) and want is not str:
        text = value.strip()
        if want is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
        else:
            try:
                return want(text)
            except ValueError:
                pass
        raise ConfigError(f"{key}={value!r} in {where} is not a valid {want.__name__}")
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if value is None and want is str:
        return ""
    if type(value) is not want:  # bool is an int subclass, so compare exactly
        raise ConfigError(f"{key}={value!r} in {where} should be of type {want.__name__}, "
                          f"not {type(value).__name__}")
    return value


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass an existing YAML file "
                          "with --config_path")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of key: value, "
                          f"not a {type(data).__name__}")
    return data


def load_config(config_path=None, overrides=None):
    """Build a :class:`Config` from the defaults, a YAML file and ``overrides``.

    Args:
        config_path (str): YAML file, or None for the built-in defaults only.
        overrides (dict): key -> value (strings are converted to the key's type).

    Returns:
        Config with every key of ``DEFAULTS`` plus ``config_path``.

    Raises:
        ConfigError: unknown key, wrong type, missing or malformed file.
    """
    cfg = Config(DEFAULTS)
    if config_path:
        where = f"config file {config_path!r}"
        for key, value in _read_yaml(config_path).items():
            _check_key(str(key), where)
            cfg[key] = _convert(key, value, where)
    for key, value in (overrides or {}).items():
        _check_key(key, "the command line")
        cfg[key] = _convert(key, value, "the command line")
    cfg["config_path"] = os.path.abspath(config_path) if config_path else ""
    return cfg


def _parse_argv(argv):
    """Split ``--key value`` / ``--key=value`` pairs; returns (config_path or None, overrides)."""
    overrides = {}
    config_path = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            raise _HelpRequested()
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; options are written --key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"option --{key} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        if key == "config_path":
            config_path = value
            continue
        _check_key(key, "the command line")
        overrides[key] = value
    return config_path, overrides


class _HelpRequested(Exception):
    pass


def _print_help(default_path):
    print("usage: [--config_path YAML] [--key value ...]\n")
    print(f"--config_path defaults to {default_path}. Every key below can be set in the YAML\n"
          "file or on the command line (command line > YAML > built-in default):\n")
    for key, value in DEFAULTS.items():
        print(f"  --{key:<24} {type(value).__name__:<6} default {value!r}")


def get_config(argv=None, default_config="default_config.yaml"):
    """Configuration for an entry point, from ``argv`` (default ``sys.argv[1:]``).

    ``--config_path`` picks the YAML file; without it, ``default_config`` next to the
    running script is used. A bad key or value prints ``error: ...`` and exits with 2.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script_dir = os.path.dirname(os.path.abspath(sys.argv[0] or "."))
    default_path = os.path.join(script_dir, default_config)
    if not os.path.isfile(default_path):
        default_path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), default_config)
    try:
        config_path, overrides = _parse_argv(argv)
        return load_config(config_path or default_path, overrides)
    except _HelpRequested:
        _print_help(default_path)
        raise SystemExit(0) from None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def save_config(cfg, directory, name="config.yaml"):
    """Write the resolved configuration to ``directory/name`` and return the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as fh:
        if cfg.get("config_path"):
            fh.write(f"# resolved from {cfg['config_path']} and the command line\n")
        yaml.safe_dump({k: v for k, v in cfg.items() if k in DEFAULTS}, fh, sort_keys=False)
    return path

