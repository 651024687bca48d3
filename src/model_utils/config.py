"""Configuration: built-in defaults < YAML file < command line, checked against one schema.

``get_config(argv, purpose)`` is the entry point; nothing is parsed at import time.

* ``SCHEMA`` is the one table of keys: each has a type (that of its default), a default,
  allowed values or a range, a help text and a group. The YAML files and ``--key value``
  on the command line may set any of them; ``--help`` prints them with the value that
  applies for the given config file and command line.
* :func:`validate` checks the whole resolved configuration before any work: every
  value, the relations between keys (warm-up within the run, AIR only on Ascend, ...),
  and what the entry point (``purpose``) needs (data folders, a checkpoint).
* Keys of the original MindSpore model zoo that this repo renamed or dropped
  (``LEGACY_KEYS``, e.g. ``decay_method``) are accepted with one note each; any other
  unknown key is an error naming the closest valid one.

A bad key or value ends the entry point with ``error: ...`` and exit code 2 (see
``src.model_utils.errors``).
"""
import difflib
import os
import sys

import yaml

from .errors import UsageError

__all__ = ["Config", "ConfigError", "Key", "SCHEMA", "DEFAULTS", "LEGACY_KEYS", "PURPOSES", "get_config",
           "load_config", "validate", "save_config", "format_help", "EXPORT_EXTENSIONS"]


class ConfigError(UsageError):
    """A configuration key or value that cannot be used; the message says which and why (exit code 2)."""


class Key:
    """One configuration key: its default (whose type is the key's type), help text and allowed values.

    Args:
        default: built-in default; the key's type is ``type(default)``.
        help (str): what the key does, one line.
        choices (tuple): the allowed values, or None.
        low, high: the inclusive range of a number, or None.
    """

    def __init__(self, default, help, choices=None, low=None, high=None):  # pylint: disable=redefined-builtin
        self.default, self.help, self.choices, self.low, self.high = default, help, choices, low, high
        self.type = type(default)
        self.group = None

    def allowed(self):
        """The allowed values as text, e.g. "one of: O0, O2, O3" or ">= 1"; "" when any value of the type fits."""
        if self.choices:
            return "one of: " + ", ".join(str(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            return f"{self.low} to {self.high}"
        if self.low is not None:
            return f">= {self.low}"
        return ""

    def check(self, name, value):
        """None if ``value`` is allowed, else the reason."""
        if self.choices and value not in self.choices:
            return f"{name}={value!r} is not supported; choose one of {list(self.choices)}"
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            return f"{name}={value!r} must be {self.allowed()}"
        return None


# The model's and the data's fixed sets (kept here so that the config module imports nothing heavy;
# tests/test_config.py checks they equal those of src.shufflenetv1, src.dataset and src.lr_generator).
MODEL_SIZES = ("0.5x", "1.0x", "1.5x", "2.0x")
GROUPS = (3, 8)
POOL_PADS = ("same", "symmetric")
INPUT_FORMATS = ("rgb_normalized", "bgr_255")
LR_DECAY_MODES = ("cosine", "linear", "steps", "steps_decay")
CONV_IMPLS = ("auto", "fast", "plain")
DEVICE_TARGETS = ("Ascend", "GPU", "CPU")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
FILE_FORMATS = ("MINDIR", "AIR", "ONNX")
EXPORT_EXTENSIONS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}

_GROUPED = {
    "device and run mode": {
        "device_target": Key("CPU", "device to run on", DEVICE_TARGETS),
        "device_id": Key(0, "device of a single-device run (DEVICE_ID in the environment wins)", low=0),
        "mode": Key("GRAPH", "GRAPH (compiled, fast) or PYNATIVE (eager, for debugging)", ("GRAPH", "PYNATIVE")),
        "is_distributed": Key(False, "data-parallel training over all ranks (launch with "
                                     "scripts/run_distribute_train*.sh)"),
        "seed": Key(1, "random seed for weights, data order and augmentation", low=0),
    },
    "data": {
        "train_dataset_path": Key("", "ImageNet-style training folder ROOT/<class>/<image>"),
        "eval_dataset_path": Key("", "ImageNet-style validation folder, the same class folders as training"),
        "is_transfer": Key(False, "transfer learning: one folder (dataset_path) split 80/20 into training and "
                                  "validation, a new classifier on pretrained weights"),
        "dataset_path": Key("", "the one folder of transfer learning (is_transfer True): ROOT/<class>/<image>"),
        "image_size": Key(224, "network input size in pixels (32-64 for quick experiments)", low=32),
        "batch_size": Key(128, "images per device and step (export: batch of the exported graph)", low=1),
        "eval_batch_size": Key(0, "images per evaluation step; 0 = batch_size", low=0),
        "num_parallel_workers": Key(0, "data loading workers per device; 0 = sized to the machine", low=0),
        "input_format": Key("rgb_normalized", "rgb_normalized (ImageNet mean/std) or bgr_255 (Megvii's "
                                              "converted weights)", INPUT_FORMATS),
    },
    "network": {
        "model_size": Key("2.0x", "width multiplier", MODEL_SIZES),
        "group": Key(3, "groups of the pointwise convolutions", GROUPS),
        "num_classes": Key(1000, "classifier outputs", low=1),
        "conv_impl": Key("auto", "auto (native CPU kernels on CPU, MindSpore's layers elsewhere), fast or plain",
                         CONV_IMPLS),
        "pool_pad": Key("same", "pooling padding: same (model zoo) or symmetric (Megvii's PyTorch weights)",
                        POOL_PADS),
    },
    "training": {
        "epoch_size": Key(250, "training epochs", low=1),
        "label_smooth_factor": Key(0.1, "label smoothing of the cross-entropy loss", low=0.0, high=0.999),
        "lr_decay_mode": Key("cosine", "learning-rate schedule after warm-up", LR_DECAY_MODES),
        "lr_init": Key(0.0, "learning rate at the start of warm-up", low=0.0),
        "lr_max": Key(0.5, "peak learning rate, reached after warm-up", low=0.0),
        "lr_end": Key(0.0, "learning rate at the end of training", low=0.0),
        "warmup_epochs": Key(4, "epochs of linear warm-up from lr_init to lr_max (at most epoch_size)", low=0),
        "loss_scale": Key(1024, "fixed loss scale (FixedLossScaleManager)", low=1),
        "weight_decay": Key(0.00004, "weight decay of conv and dense weights (not BN, not biases)", low=0.0),
        "momentum": Key(0.9, "momentum of the Momentum optimizer", low=0.0, high=1.0),
        "amp_level": Key("O0", "mixed precision: O0 (fp32), O1, O2 or O3 (fp16); CPU always trains in fp32 (O0)",
                         AMP_LEVELS),
        "freeze_backbone": Key(False, "train the classifier only (transfer learning)"),
        "log_interval": Key(0, "print progress every N steps; 0 = once per epoch", low=0),
        "eval_interval": Key(0, "evaluate on the validation data every N epochs; 0 = never during training", low=0),
    },
    "checkpoints": {
        "resume": Key("", "checkpoint to start from: \"\" = from scratch, \"auto\" = the newest in save_ckpt_path, "
                          "or a path (a run of this repo continues; other weights initialise the network)"),
        "ckpt_path": Key("", "checkpoint evaluated by eval.py and exported by export.py"),
        "save_ckpt_path": Key("./output", "folder for checkpoints, the resolved config and the training log"),
        "save_checkpoint": Key(True, "write checkpoints during training"),
        "save_checkpoint_epochs": Key(1, "write a checkpoint every N epochs", low=1),
        "save_checkpoint_steps": Key(200, "also write a recovery checkpoint every N steps within an epoch (only the "
                                          "newest is kept); 0 = at epoch ends only", low=0),
        "keep_checkpoint_max": Key(5, "keep at most N epoch checkpoints (oldest removed first)", low=1),
        "exact_data_resume": Key(True, "a resumed run sees the images and augmentation an uninterrupted run would "
                                       "(replays the data pipeline up to the resume step, no training); False: "
                                       "skips at once, same order but other augmentation"),
    },
    "export": {
        "file_name": Key("shufflenetv1", "exported file name; the format's extension is added unless given"),
        "file_format": Key("MINDIR", "MINDIR, AIR (Ascend only) or ONNX", FILE_FORMATS),
    },
    "ModelArts (Huawei Cloud)": {
        "enable_modelarts": Key(False, "copy data in and results out with the moxing package (ModelArts only)"),
        "data_url": Key("", "OBS path of the data, copied to data_path"),
        "train_url": Key("", "OBS path that receives output_path after the run"),
        "checkpoint_url": Key("", "OBS path of a checkpoint (or its folder), copied to load_path"),
        "data_path": Key("/cache/data", "local copy of data_url; relative data paths are read inside it"),
        "output_path": Key("/cache/train", "local folder copied to train_url; checkpoints and exports go inside it"),
        "load_path": Key("/cache/checkpoint_path", "local copy of checkpoint_url; relative resume / ckpt_path "
                                                   "are read inside it"),
    },
}

SCHEMA = {}
for _group, _keys in _GROUPED.items():
    for _name, _key in _keys.items():
        _key.group = _group
        SCHEMA[_name] = _key
DEFAULTS = {name: key.default for name, key in SCHEMA.items()}

# Keys of the original MindSpore model zoo's YAML files (and its documented command-line
# arguments) that this repo renamed or does not use: name -> (new key or None, note).
LEGACY_KEYS = {
    "decay_method": ("lr_decay_mode", "the original model zoo's name of lr_decay_mode"),
    "ckpt_file": ("ckpt_path", "the original README's name of ckpt_path"),
    "enable_profiling": (None, "ignored: profile with python benchmark.py --profile DIR"),
    "checkpoint_path": (None, "ignored: nothing in the original read it; the checkpoint to evaluate or "
                              "export is ckpt_path"),
    "checkpoint_file": (None, "ignored: nothing in the original read it; the checkpoint to evaluate or "
                              "export is ckpt_path"),
    "onnx_path": (None, "ignored: ONNX inference is python infer_onnx.py --onnx_path FILE --dataset_path DIR"),
    "onnx_dataset_path": (None, "ignored: ONNX inference is python infer_onnx.py --onnx_path FILE "
                                "--dataset_path DIR"),
}

# What an entry point needs of the config (validate's purpose).
PURPOSES = ("train", "eval", "export", "predict", "any")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Config(dict):
    """A dict whose keys are also attributes (``config.batch_size``), remembering which keys the
    command line gave (:meth:`from_command_line`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "command_line_keys", frozenset())

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name, value):
        self[name] = value

    def from_command_line(self, key):
        """Whether ``key`` was given on the command line (not by the YAML file or the defaults)."""
        return key in self.command_line_keys


def _closest(key):
    match = difflib.get_close_matches(key, list(SCHEMA) + list(LEGACY_KEYS), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _check_key(key, where):
    if key not in SCHEMA and key not in LEGACY_KEYS:
        raise ConfigError(f"unknown key '{key}' in {where}{_closest(key)}")


def _convert(key, value, where):
    """Coerce ``value`` to the type of ``key``; strings come from the command line."""
    want = SCHEMA[key].type
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
    if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. file_name: 123
    choices = SCHEMA[key].choices
    if want is str and choices and isinstance(value, str) and value not in choices:
        same = [c for c in choices if c.lower() == value.strip().lower()]
        if same:  # "cpu" -> "CPU", "onnx" -> "ONNX", "o3" -> "O3"
            return same[0]
    if type(value) is not want:  # bool is an int subclass, so compare exactly
        raise ConfigError(f"{key}={value!r} in {where} should be of type {want.__name__}, "
                          f"not {type(value).__name__}")
    return value


def _read_yaml(path):
    """The key/value mapping of a YAML config file.

    The original model zoo's files hold up to three YAML documents (values, help texts,
    choices): the first is the configuration, the others are ignored.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass an existing YAML file "
                          "with --config_path")
    try:
        with open(path, encoding="utf-8") as fh:
            documents = list(yaml.safe_load_all(fh))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from exc
    data = documents[0] if documents else None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of key: value, "
                          f"not a {type(data).__name__}")
    return data


def _apply(cfg, items, where, notes):
    """Set ``items`` (key -> value) from ``where`` into ``cfg``, legacy keys included; returns the keys set."""
    items = dict(items)
    set_keys = set()
    for key, value in items.items():
        key = str(key)
        _check_key(key, where)
        if key in LEGACY_KEYS:
            new, note = LEGACY_KEYS[key]
            if new is None:
                notes.append(f"note: '{key}' in {where} is {note}")
                continue
            if new in items:
                notes.append(f"note: '{key}' in {where} is {note}; {new} is also given there and is used")
                continue
            notes.append(f"note: '{key}' in {where} is {note}: using {new}={value!r}")
            key = new
        cfg[key] = _convert(key, value, where)
        set_keys.add(key)
    return set_keys


def load_config(config_path=None, overrides=None, notes=None):
    """Build a :class:`Config` from the defaults, a YAML file and ``overrides`` (not validated).

    Args:
        config_path (str): YAML file, or None for the built-in defaults only.
        overrides (dict): key -> value from the command line (strings are converted).
        notes (list): receives one line per legacy key met (printed by :func:`get_config`).

    Returns:
        Config with every key of ``SCHEMA`` plus ``config_path``.

    Raises:
        ConfigError: unknown key, wrong type, missing or malformed file.
    """
    notes = [] if notes is None else notes
    cfg = Config(DEFAULTS)
    if config_path:
        _apply(cfg, _read_yaml(config_path), f"config file {config_path!r}", notes)
    given = _apply(cfg, overrides or {}, "the command line", notes)
    object.__setattr__(cfg, "command_line_keys", frozenset(given))
    cfg["config_path"] = os.path.abspath(config_path) if config_path else ""
    return cfg


def validate(cfg, purpose="any", check_paths=True):
    """Check every value of ``cfg`` and what ``purpose`` needs; raises :class:`ConfigError` naming the first problem.

    Args:
        cfg (Config): the resolved configuration.
        purpose (str): one of ``PURPOSES``: "train" (training data), "eval" (validation data),
            "export" (a checkpoint, a format this device writes, an output folder),
            "predict" (validation data), or "any" (values only).
        check_paths (bool): also check that the data folders and the checkpoint exist
            (on ModelArts they exist only after the moxing copies).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"validate: unknown purpose {purpose!r}; one of {list(PURPOSES)}")
    for name, key in SCHEMA.items():
        problem = key.check(name, cfg[name])
        if problem:
            raise ConfigError(problem)
    if cfg.warmup_epochs > cfg.epoch_size:
        raise ConfigError(f"warmup_epochs={cfg.warmup_epochs} must be at most epoch_size={cfg.epoch_size}")
    cores = os.cpu_count() or 1
    if cfg.num_parallel_workers > cores:
        raise ConfigError(f"num_parallel_workers={cfg.num_parallel_workers} exceeds this machine's {cores} CPU "
                          f"cores; use at most {cores} (or 0 for automatic)")
    if cfg.is_transfer and cfg.train_dataset_path:
        raise ConfigError(f"is_transfer=True splits dataset_path into training and validation, so "
                          f"train_dataset_path={cfg.train_dataset_path!r} would be ignored: pass one of them, "
                          "not both")
    if not cfg.is_transfer and cfg.dataset_path and not (cfg.train_dataset_path or cfg.eval_dataset_path):
        raise ConfigError(f"dataset_path={cfg.dataset_path!r} is the folder of transfer learning: pass "
                          "--is_transfer True (or --config_path transfer_config.yaml), or use "
                          "--train_dataset_path / --eval_dataset_path for ImageNet-style data")
    if purpose == "export":
        if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
            raise ConfigError(f"file_format=AIR needs an Ascend device (--device_target Ascend on an Ascend "
                              f"machine), not device_target={cfg.device_target}; on this machine export MINDIR "
                              "(MindSpore Lite, Ascend 310) or ONNX (onnxruntime)")
        if not cfg.file_name:
            raise ConfigError("file_name is empty; pass --file_name NAME (the extension is added)")
        for fmt, extension in EXPORT_EXTENSIONS.items():
            if fmt != cfg.file_format and cfg.file_name.lower().endswith(extension):
                raise ConfigError(f"file_name={cfg.file_name!r} ends with {extension}, but file_format="
                                  f"{cfg.file_format}: pass --file_format {fmt}, or a file_name without {extension}")
    if not check_paths:
        return
    if purpose == "train":
        _need_data(cfg, "train_dataset_path", "the training images")
        if cfg.eval_interval and cfg.eval_dataset_path and not cfg.is_transfer:
            _need_data(cfg, "eval_dataset_path", "the validation images")
    elif purpose in ("eval", "predict"):
        _need_data(cfg, "eval_dataset_path", "the validation images")
    if purpose in ("eval", "export", "predict") and cfg.ckpt_path and not os.path.isfile(cfg.ckpt_path):
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r} is not a file; pass a checkpoint written by train.py "
                          "(e.g. output/shufflenetv1-250_1251.ckpt)")
    if purpose == "export":
        if not cfg.ckpt_path:
            raise ConfigError("no checkpoint given; pass --ckpt_path PATH_TO.ckpt")
        folder = os.path.dirname(os.path.abspath(cfg.file_name))
        if not os.path.isdir(folder):
            raise ConfigError(f"file_name={cfg.file_name!r}: the folder {folder!r} does not exist")


def _need_data(cfg, key, what):
    """A data folder that must exist: ``key``, or dataset_path when is_transfer."""
    if cfg.is_transfer:
        key, what = "dataset_path", "the photos to split into training and validation"
    path = cfg[key]
    if not path:
        raise ConfigError(f"no {key} given: pass --{key} with {what} (ROOT/<class>/<image>)")
    if not os.path.isdir(path):
        raise ConfigError(f"{key}={path!r} is not a directory; expected {what} as {path}/<class>/<image>")


def _parse_argv(argv):
    """Split ``--key value`` / ``--key=value`` pairs; returns (config_path or None, overrides, help wanted)."""
    overrides = {}
    config_path = None
    wants_help = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            wants_help = True
            i += 1
            continue
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
    return config_path, overrides, wants_help


def format_help(cfg, prog="train.py"):
    """The ``--help`` text: every key by group, with the value that applies, its help and allowed values."""
    source = cfg.get("config_path") or "the built-in defaults"
    lines = [f"usage: python {prog} [--config_path YAML] [--key value ...]", "",
             f"Values shown are those that apply: {source}, then the command line "
             "(command line > YAML file > built-in default).", ""]
    for group, keys in _GROUPED.items():
        lines.append(f"{group}:")
        for name, key in keys.items():
            value = cfg[name]
            shown = '""' if value == "" else value
            mark = "  (command line)" if cfg.from_command_line(name) else ""
            lines.append(f"  --{name} {shown}{mark}")
            allowed = key.allowed()
            lines.append(f"      {key.type.__name__}; {key.help}" + (f"; {allowed}" if allowed else ""))
        lines.append("")
    lines.append("Keys of the original model zoo also accepted: "
                 + ", ".join(f"{old} ({new or 'ignored'})" for old, (new, _) in LEGACY_KEYS.items()))
    return "\n".join(lines)


def _default_config_path(default_config):
    script_dir = os.path.dirname(os.path.abspath(sys.argv[0] or "."))
    path = os.path.join(script_dir, default_config)
    if not os.path.isfile(path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            default_config)
    return path


def get_config(argv=None, purpose="any", default_config="default_config.yaml", prog=None):
    """The validated configuration of an entry point, from ``argv`` (default ``sys.argv[1:]``).

    ``--config_path`` picks the YAML file; without it, ``default_config`` next to the
    running script is used. ``--help`` prints :func:`format_help` for that file and
    exits 0. A bad key or value prints ``error: ...`` and exits with 2; each legacy key
    prints one note.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or os.path.basename(sys.argv[0] or "train.py")
    notes = []
    try:
        config_path, overrides, wants_help = _parse_argv(argv)
        cfg = load_config(config_path or _default_config_path(default_config), overrides, notes)
        for note in notes:
            print(note, flush=True)
        if wants_help:
            print(format_help(cfg, prog))
            raise SystemExit(0)
        validate(cfg, purpose, check_paths=not cfg.enable_modelarts)
        return cfg
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def save_config(cfg, directory, name="config.yaml"):
    """Write the resolved configuration to ``directory/name`` and return the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as fh:
        if cfg.get("config_path"):
            fh.write(f"# resolved from {cfg['config_path']} and the command line\n")
        yaml.safe_dump({k: v for k, v in cfg.items() if k in SCHEMA}, fh, sort_keys=False)
    return path
