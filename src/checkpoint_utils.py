"""Checkpoints: names and safe writing, loading weights with errors that name what does not fit,
what a checkpoint says about its network, and where a run resumes.

``load_pretrained`` is the one door for weights: our own training checkpoints,
the original MindSpore model-zoo checkpoint (MindSpore Hub
"shufflenetv1_imagenet2012") and Megvii's weights converted with
``tools/convert_megvii.py``. Optimizer state in the file (``moments.*``,
``learning_rate``, ``global_step``, ...) is ignored there; resuming training
restores it separately (:func:`restore_training_state`).

The model-zoo network stored each grouped 1x1 convolution as ``g`` separate
convolutions (``<conv>.convs.{k}.weight``, each ``(out/g, in/g, 1, 1)``, piece
``k`` computing the k-th block of output channels from the k-th block of input
channels). That is exactly a grouped convolution whose weight is the pieces
joined along the output axis, which is what ``load_pretrained`` builds.

Every checkpoint this repo writes records the variant and the options its weights need
(``RECORDED_KEYS``); :func:`adopt_checkpoint_config` takes them into the config of
eval.py, export.py, predict_grid.py and train.py --resume. A checkpoint that records
nothing (model zoo, other code) is described by its shapes (:func:`infer_variant`).
"""
import glob
import os
import re

import numpy as np
import mindspore as ms

from .model_utils.errors import UsageError
from .model_utils.files import replace_when_done
from .shufflenetv1 import STAGE_CHANNELS

__all__ = ["CheckpointError", "CKPT_PREFIX", "checkpoint_name", "list_checkpoints", "best_checkpoint_name",
           "save_checkpoint_atomic", "verify_checkpoint", "remove_unfinished_writes", "read_checkpoint",
           "load_pretrained", "join_group_pieces", "infer_variant", "describe_variant", "read_recorded",
           "checkpoint_record", "adopt_checkpoint_config", "prepare_run_dir", "resolve_resume",
           "restore_training_state", "read_best_top1", "TrainingState", "checkpoint_to_evaluate", "CLASSIFIER_PREFIX",
           "RECORDED_KEYS", "NETWORK_OPTION_KEYS", "UsedRunFolder"]

CLASSIFIER_PREFIX = "classifier."
CKPT_PREFIX = "shufflenetv1"
_CKPT_RE = re.compile(rf"^{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$")
# The best-validation checkpoint of a run (ValAccMonitor): the original's name for transfer learning.
_BEST_NAMES = {True: "shufflenetv1_transfer_best.ckpt", False: "shufflenetv1_best.ckpt"}
# Config keys recorded in every checkpoint this repo writes, as append_dict entries.
VARIANT_KEYS = ("model_size", "group", "num_classes")
# Options the weights only compute their function with (e.g. Megvii's converted weights need
# symmetric pooling and BGR 0-255 input); tools/convert_megvii.py records them too.
NETWORK_OPTION_KEYS = ("pool_pad", "input_format")
RECORDED_KEYS = VARIANT_KEYS + NETWORK_OPTION_KEYS + ("image_size",)
# "<conv>.convs.<k>.weight": piece k of a grouped conv in the model-zoo layout.
_GROUP_PIECE = re.compile(r"^(?P<conv>.+)\.convs\.(?P<index>\d+)\.weight$")
_TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar")
# Names of unfinished writes: ours (<name>.tmp-<pid>.ckpt) and MindSpore's own temporary file
# inside save_checkpoint (the same name ending in .tmp).
_TEMP_NAME = re.compile(r"^.+\.ckpt\.tmp-(\d+)\.(?:ckpt|tmp)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with this network; the message says why."""


# ----------------------------------------------------------------------------- names and writing

def checkpoint_name(epoch, step):
    """File name of the checkpoint at ``step`` of ``epoch`` (the original's ``shufflenetv1-<epoch>_<step>.ckpt``)."""
    return f"{CKPT_PREFIX}-{epoch}_{step}.ckpt"


def best_checkpoint_name(is_transfer):
    """File name of a run's best-validation checkpoint (transfer learning: the original's name)."""
    return _BEST_NAMES[bool(is_transfer)]


def list_checkpoints(directory):
    """Training checkpoints in ``directory``, oldest first, as (epoch, step, path)."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), f"{CKPT_PREFIX}-*_*.ckpt")):
        match = _CKPT_RE.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


def remove_unfinished_writes(directory):
    """Delete checkpoint temporaries left in ``directory`` by a killed process; returns their paths.

    A file whose writer is still running (its pid is alive) is left alone.
    """
    removed = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        match = _TEMP_NAME.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            os.chmod(path, 0o600)  # MindSpore makes checkpoints read-only
            os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_checkpoint_atomic(cell_or_list, path, append_dict=None):
    """Write a checkpoint to a temporary file and rename it, so a killed process never
    leaves a file at ``path`` that looks complete but is not."""
    # (save_checkpoint appends .ckpt to any other name)
    with replace_when_done(path, f"{path}.tmp-{os.getpid()}.ckpt") as tmp:
        ms.save_checkpoint(cell_or_list, tmp, append_dict=append_dict, crc_check=True)
    return path


def verify_checkpoint(path):
    """None when ``path`` reads back whole (CRC checked), else the reason it does not."""
    try:
        ms.load_checkpoint(path, crc_check=True)
    except Exception as exc:  # pylint: disable=broad-except  (MindSpore raises several types)
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


# ----------------------------------------------------------------------------- loading weights

def read_checkpoint(ckpt_path):
    """Read a ``.ckpt`` file into a name -> Parameter dict, with a clear error when it cannot."""
    if not ckpt_path:
        raise CheckpointError("no checkpoint given; pass --ckpt_path PATH_TO.ckpt")
    if not os.path.isfile(ckpt_path):
        raise CheckpointError(f"checkpoint {ckpt_path!r} does not exist (or is not a file)")
    if ckpt_path.endswith(_TORCH_SUFFIXES):
        raise CheckpointError(f"checkpoint {ckpt_path!r} looks like a PyTorch file; MindSpore needs a "
                              f".ckpt. Megvii's ShuffleNetV1 weights convert with: python "
                              f"tools/convert_megvii.py --pth {ckpt_path} --model_size SIZE --group G "
                              f"--output converted.ckpt")
    if not ckpt_path.endswith(".ckpt"):
        raise CheckpointError(f"checkpoint {ckpt_path!r} is not a MindSpore checkpoint: the file name "
                              f"must end with .ckpt")
    try:
        return ms.load_checkpoint(ckpt_path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with a long C++ trace
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {ckpt_path!r} cannot be read: it is damaged or not a "
                              f"MindSpore checkpoint ({first_line})") from exc


def join_group_pieces(params, wanted_names=None, ckpt_path="checkpoint"):
    """Grouped-conv weights of the model-zoo layout, joined: ``{"<conv>.weight": Parameter}``.

    Only convs whose joined name is in ``wanted_names`` (None: any name outside the
    optimizer's ``moments.*``) and absent from ``params`` are joined.

    Raises:
        CheckpointError: a piece missing between others, or pieces whose shapes cannot be joined.
    """
    pieces = {}
    for name, value in params.items():
        match = _GROUP_PIECE.match(name)
        if match is None:
            continue
        joined = f"{match['conv']}.weight"
        wanted = joined in wanted_names if wanted_names is not None else not joined.startswith("moments.")
        if wanted and joined not in params:
            pieces.setdefault(joined, {})[int(match["index"])] = value
    joined_params = {}
    for joined, parts in sorted(pieces.items()):
        conv = joined[:-len(".weight")]
        absent = sorted(set(range(max(parts) + 1)) - set(parts))
        if absent:
            raise CheckpointError(f"checkpoint {ckpt_path!r} has pieces {sorted(parts)} of the grouped "
                                  f"conv {conv} but lacks {conv}.convs.{absent[0]}.weight")
        arrays = [parts[k].asnumpy() for k in range(len(parts))]
        shapes = [tuple(a.shape) for a in arrays]
        if len({(len(shape),) + shape[1:] for shape in shapes}) != 1 or len(shapes[0]) != 4:
            raise CheckpointError(f"checkpoint {ckpt_path!r}: the pieces {conv}.convs.*.weight have "
                                  f"shapes {shapes}, which do not join into one grouped conv weight "
                                  f"(all should be (out/g, in/g, kh, kw))")
        joined_params[joined] = ms.Parameter(ms.Tensor(np.concatenate(arrays, axis=0)), name=joined)
    return joined_params


def _joined_note(name, joined):
    return f" (joined from {name[:-len('.weight')]}.convs.*)" if name in joined else ""


def _class_count_differs(params, wanted):
    """True when the checkpoint's classifier differs from the network's only in its class count."""
    src = params.get(CLASSIFIER_PREFIX + "weight")
    dst = wanted.get(CLASSIFIER_PREFIX + "weight")
    if src is None or dst is None or len(src.shape) != 2 or len(dst.shape) != 2:
        return False
    return src.shape[0] != dst.shape[0] and src.shape[1] == dst.shape[1]


def load_pretrained(net, ckpt_path, allow_classifier_mismatch=False):
    """Load the weights of ``ckpt_path`` into ``net``.

    Our own checkpoints load name for name; the model-zoo layout (grouped convs stored as
    per-group ``<conv>.convs.{k}.weight`` pieces) is joined first. Entries the network does
    not have (optimizer state, recorded options) are ignored.

    Args:
        net (Cell): the network (ShuffleNetV1).
        ckpt_path (str): a MindSpore checkpoint.
        allow_classifier_mismatch (bool): when the checkpoint's classifier has another class
            count (and the same input width), keep the network's freshly initialised
            classifier instead of failing (transfer learning). Any other classifier shape
            difference is still an error.

    Returns:
        dict with ``loaded`` (names loaded) and ``skipped`` (list of (name, reason)).

    Raises:
        CheckpointError: unreadable file, a parameter of the network missing from the
            checkpoint, or a shape that does not match (named, with both shapes).
    """
    params = read_checkpoint(ckpt_path)
    wanted = {name: p for name, p in net.parameters_and_names()}
    joined = join_group_pieces(params, wanted, ckpt_path)
    params = {**params, **joined}
    drop_classifier = _class_count_differs(params, wanted)
    to_load, skipped, missing, mismatched = {}, [], [], []
    for name, param in wanted.items():
        if drop_classifier and allow_classifier_mismatch and name.startswith(CLASSIFIER_PREFIX):
            classes = params[CLASSIFIER_PREFIX + "weight"].shape[0]
            skipped.append((name, f"the checkpoint has {classes} classes, the network "
                                  f"{wanted[CLASSIFIER_PREFIX + 'weight'].shape[0]} (different class "
                                  f"count); the classifier keeps its initialisation"))
            continue
        if name not in params or isinstance(params[name], str):
            missing.append(name)
            continue
        src = params[name]
        if tuple(src.shape) != tuple(param.shape):
            mismatched.append(f"{name}{_joined_note(name, joined)}: checkpoint {tuple(src.shape)}, "
                              f"network {tuple(param.shape)}")
            continue
        to_load[name] = src
    if mismatched:
        hint = "another model_size/group?"
        implied = infer_variant(params)
        if implied:
            hint = (f"{describe_variant(implied)}: pass --model_size {implied['model_size']} "
                    f"--group {implied['group']}")
        if drop_classifier:
            hint = (f"the checkpoint has {params[CLASSIFIER_PREFIX + 'weight'].shape[0]} classes: set "
                    f"num_classes to match, or let the classifier be dropped for transfer learning")
        raise CheckpointError(f"checkpoint {ckpt_path!r} does not fit this network ({hint}): "
                              + "; ".join(mismatched[:5])
                              + (f"; and {len(mismatched) - 5} more" if len(mismatched) > 5 else ""))
    if missing:
        raise CheckpointError(f"checkpoint {ckpt_path!r} lacks {len(missing)} parameter(s) of this "
                              f"network, e.g. {', '.join(missing[:5])}")
    not_loaded, _ = ms.load_param_into_net(net, to_load, strict_load=True)
    not_loaded = [n for n in not_loaded if n not in dict(skipped)]
    if not_loaded:
        raise CheckpointError(f"parameters not loaded from {ckpt_path!r}: {', '.join(not_loaded[:5])}")
    return {"loaded": sorted(to_load), "skipped": skipped}




# ----------------------------------------------------------------------------- what a checkpoint is

def infer_variant(params):
    """The variant a checkpoint's shapes imply: {model_size, group, num_classes, stem, stage2}, or {} if none.

    ``params`` is what :func:`read_checkpoint` returns; the model-zoo layout (grouped convs
    in pieces) is read too.
    """
    params = {**params, **join_group_pieces(params)}
    try:
        stem = int(params["first_conv.0.weight"].shape[0])
        stage2 = stem + int(params["features.0.branch_main_2.2.weight"].shape[0])
        group = stage2 // int(params["features.1.branch_main_1.0.weight"].shape[1])
        classes = int(params[CLASSIFIER_PREFIX + "weight"].shape[0])
    except (KeyError, AttributeError, IndexError, TypeError, ZeroDivisionError):
        return {}
    for (g, size), channels in STAGE_CHANNELS.items():
        if g == group and channels[:2] == (stem, stage2):
            return {"model_size": size, "group": g, "num_classes": classes, "stem": stem, "stage2": stage2}
    return {}


def describe_variant(variant):
    """E.g. "the checkpoint is 1.0x g3: stem 24, stage 2 240 channels, 1000 classes"."""
    return (f"the checkpoint is {variant['model_size']} g{variant['group']}: stem {variant['stem']}, stage 2 "
            f"{variant['stage2']} channels, {variant['num_classes']} classes")


def _entry(value):
    """A recorded append_dict entry as a Python value (MindSpore stores ints/floats as Parameters)."""
    if isinstance(value, str):
        return value
    array = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
    return array.item() if array.size == 1 else None


def read_recorded(params):
    """The config values a checkpoint of this repo records (``RECORDED_KEYS``); {} for other files."""
    recorded = {}
    for key in RECORDED_KEYS:
        if key in params:
            value = _entry(params[key])
            if key in ("group", "num_classes", "image_size") and value is not None:
                value = int(value)
            if value is not None:
                recorded[key] = value
    return recorded


def checkpoint_record(cfg):
    """The entries every checkpoint of a run records (``RECORDED_KEYS`` from ``cfg``)."""
    return {key: cfg[key] for key in RECORDED_KEYS}


def adopt_checkpoint_config(cfg, ckpt_path, purpose):
    """Take into ``cfg`` what the checkpoint says its network is; returns the checkpoint's params.

    * model_size, group and num_classes: what the checkpoint records (this repo's files) or,
      else, what its shapes imply; taken when the command line does not give them (a note
      says so), an error naming both when the command line contradicts them. Training keeps
      the config's class count with ``is_transfer`` and a ``--num_classes`` of the command line
      (fine-tuning: a new classifier is trained).
    * pool_pad and input_format (recorded only): the same rule.
    * image_size (recorded): a different size warns, naming both.

    Call before the data pipeline and the network are built.

    Raises:
        CheckpointError: an unreadable checkpoint.
        UsageError: the command line contradicts the checkpoint.
    """
    params = read_checkpoint(ckpt_path)
    recorded = read_recorded(params)
    implied = infer_variant(params)
    known = {key: implied[key] for key in VARIANT_KEYS if key in implied}
    known.update({key: value for key, value in recorded.items() if key != "image_size"})
    if purpose == "train" and (cfg.is_transfer or cfg.from_command_line("num_classes")):
        known.pop("num_classes", None)
    how = "recorded in" if recorded else "implied by the shapes of"
    for key, value in known.items():
        if cfg[key] == value:
            continue
        if cfg.from_command_line(key):
            what = describe_variant(implied) if implied and key in VARIANT_KEYS else f"it records {key}={value}"
            raise UsageError(f"--{key} {cfg[key]} contradicts {ckpt_path}: {what}; drop --{key} (it is taken "
                             f"from the checkpoint) or pass the checkpoint of a {key}={cfg[key]} network")
        print(f"using {key}={value} {how} {ckpt_path} (the config said {cfg[key]})", flush=True)
        cfg[key] = value
    trained = recorded.get("image_size")
    if trained and trained != cfg.image_size and purpose != "train":
        print(f"warning: image_size={cfg.image_size}, but the network of {ckpt_path} was trained at {trained} px; "
              f"accuracy may differ from that of training: pass --image_size {trained} to use the size it "
              "learnt", flush=True)
    return params


def checkpoint_to_evaluate(cfg):
    """The checkpoint eval.py and predict_grid.py use: ``ckpt_path``; without it, transfer learning's
    best checkpoint in ``save_ckpt_path``."""
    if cfg.ckpt_path:
        return cfg.ckpt_path
    if cfg.is_transfer:
        path = os.path.join(cfg.save_ckpt_path, best_checkpoint_name(True))
        if not os.path.isfile(path):
            raise UsageError(f"no --ckpt_path given and the transfer run's best checkpoint {path!r} does not "
                             "exist; train first (python train.py --config_path transfer_config.yaml) or pass "
                             "--ckpt_path")
        return path
    raise UsageError("no checkpoint given; pass --ckpt_path PATH_TO.ckpt")


# ----------------------------------------------------------------------------- runs and resuming

class UsedRunFolder(UsageError):
    """A new run into a folder that holds another run's checkpoints or log (exit code 2)."""


def _run_files(directory):
    found = [os.path.basename(path) for _, _, path in list_checkpoints(directory)]
    found += [name for name in (*_BEST_NAMES.values(), "train_log.jsonl")
              if os.path.isfile(os.path.join(directory, name))]
    return found


def prepare_run_dir(cfg, rank=0, group_size=1):
    """The checkpoint folder of this process (one sub-folder per rank when distributed), ready to write.

    Checked writable; unfinished checkpoint writes of a killed run are removed (saying so).
    A new run (``resume`` is not "auto" and not a checkpoint inside the folder) into a folder
    holding another run's checkpoints or log is refused, so that nothing of it is replaced.

    Raises:
        UsageError: the folder is not writable, or holds another run.
    """
    directory = os.path.abspath(cfg.save_ckpt_path)
    if group_size > 1:
        directory = os.path.join(directory, f"rank_{rank}")
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".write_test_{os.getpid()}")
        with open(probe, "w", encoding="utf-8") as fh:
            fh.write("x" * 4096)
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"save_ckpt_path {directory!r} is not writable ({exc.strerror}); choose a folder you "
                         "can write to with --save_ckpt_path") from exc
    for path in remove_unfinished_writes(directory):
        print(f"removed {path}: an unfinished checkpoint write of a killed run", flush=True)
    continuing = cfg.resume == "auto" or (cfg.resume and os.path.dirname(os.path.abspath(cfg.resume)) == directory)
    existing = _run_files(directory)
    if existing and not continuing:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise UsedRunFolder(f"save_ckpt_path {directory!r} already holds another run ({shown}); a new run there "
                            "would replace its checkpoints and mix the logs. Continue that run with --resume "
                            "auto, or start a new one with another --save_ckpt_path")
    return directory


def resolve_resume(cfg, directory, group_size=1):
    """The checkpoint named by ``resume``: a path, "auto" (newest readable one in the run folder) or "" (none).

    A path that comes from the config file (transfer_config.yaml's pretrained weights) and does
    not exist means "from scratch", with a warning; a path given on the command line must exist.
    Data parallel (``group_size`` > 1), "auto" is the newest (epoch, step) that every rank has
    readable, so that all ranks continue from the same step.
    """
    if cfg.resume != "auto":
        if cfg.resume and not os.path.exists(cfg.resume) and not cfg.from_command_line("resume"):
            print(f"warning: the pretrained checkpoint {cfg.resume!r} named in {cfg.config_path} does not exist: "
                  "training starts FROM SCRATCH (random weights), which needs far more epochs and images. To "
                  "fine-tune, put the MindSpore Hub weights shufflenetv1_imagenet2012 there (see "
                  "docs/pretrained.md) or pass --resume PATH; --resume \"\" trains from scratch without this "
                  "warning", flush=True)
            return ""
        if cfg.resume and not os.path.isfile(cfg.resume):
            raise UsageError(f"resume={cfg.resume!r} is not a file; pass a checkpoint, \"auto\" (the newest in "
                             "save_ckpt_path) or \"\" (from scratch)")
        return cfg.resume
    readable = []
    for epoch, step, path in reversed(list_checkpoints(directory)):
        problem = verify_checkpoint(path)
        if problem:
            print(f"warning: skipping damaged checkpoint {path}: {problem}", flush=True)
            continue
        readable.append((epoch, step, path))
        if group_size == 1:
            break
    if group_size > 1:
        readable = _common_to_all_ranks(readable, directory)
    if not readable:
        print(f"resume auto: no checkpoint in {directory}; training from scratch", flush=True)
        return ""
    epoch, step, path = readable[0]
    print(f"resume auto: continuing from {path} (epoch {epoch}, step {step})", flush=True)
    return path


def _common_to_all_ranks(readable, directory):
    """Of this rank's readable checkpoints (newest first), the one at the newest (epoch, step) all ranks have."""
    import mindspore.ops as ops  # pylint: disable=import-outside-toplevel
    from mindspore.communication import get_rank  # pylint: disable=import-outside-toplevel
    mine = readable[0][0] * 10 ** 9 + readable[0][1] if readable else 0
    newest = ops.AllGather()(ms.Tensor(np.array([mine], np.int64))).asnumpy()
    common = int(newest.min())
    if common == 0:
        if readable:
            print(f"warning: another rank has no checkpoint: this rank (rank {get_rank()}) starts from scratch too, "
                  f"and does not use those in {directory}", flush=True)
        return []
    for epoch, step, path in readable:
        if epoch * 10 ** 9 + step == common:
            return [(epoch, step, path)]
    wanted = checkpoint_name(common // 10 ** 9, common % 10 ** 9)
    raise CheckpointError(f"rank {get_rank()} has no readable {os.path.join(directory, wanted)}, the newest "
                          "step the other ranks all have: remove the checkpoints after a step that every rank "
                          "folder holds, then run with --resume auto again (or start over in another "
                          "--save_ckpt_path)")


class TrainingState:
    """Where training starts: after global step ``start_step``, with this optimizer state, best top-1 so
    far and the progress monitor's running epoch loss (:meth:`src.callbacks.TrainMonitor.state`, or None)."""

    def __init__(self, start_step=0, optimizer_state=None, best_top1=-1.0, monitor_state=None):
        self.start_step, self.optimizer_state = start_step, optimizer_state or {}
        self.best_top1, self.monitor_state = best_top1, monitor_state


def restore_training_state(net, path, steps_per_epoch, params=None):
    """Load ``path`` into ``net``; returns the :class:`TrainingState` to continue from.

    A checkpoint written by train.py for the same network continues its run at the step
    after the one it was saved at (epoch, step in the epoch, momentum, LR step); any other
    checkpoint only initialises the weights (pretrained), dropping the classifier when the
    class count differs. When the data now has another number of steps per epoch (other
    images, batch size or ranks) a mid-epoch checkpoint restarts its epoch.
    """
    if not path:
        print("no resume checkpoint: training from scratch (random initialisation)", flush=True)
        return TrainingState()
    report = load_pretrained(net, path, allow_classifier_mismatch=True)
    params = read_checkpoint(path) if params is None else params
    for name, reason in report["skipped"]:
        print(f"not loaded from {path}: {name}: {reason}", flush=True)
    if "epoch_num" not in params or "step_num" not in params or report["skipped"]:
        print(f"initialised the network from {path} ({len(report['loaded'])} parameters)", flush=True)
        return TrainingState()
    epoch, step = int(_entry(params["epoch_num"])), int(_entry(params["step_num"]))
    saved_per_epoch = int(_entry(params["steps_per_epoch"])) if "steps_per_epoch" in params else step
    opt_state = {k: v for k, v in params.items() if k.startswith("moments.") or k == "global_step"}
    best = float(_entry(params["best_val_top1"])) if "best_val_top1" in params else -1.0
    monitor = _entry(params["train_monitor"]) if "train_monitor" in params else None
    if saved_per_epoch == steps_per_epoch:
        start = (epoch - 1) * steps_per_epoch + step
        where = "the end of that epoch" if step == steps_per_epoch else f"step {step + 1} of epoch {epoch}"
        print(f"resuming {path}: saved at step {step}/{steps_per_epoch} of epoch {epoch}; continuing at {where}",
              flush=True)
    else:
        done = epoch if step == saved_per_epoch else epoch - 1
        start, monitor = done * steps_per_epoch, None
        print(f"warning: {path} was saved with {saved_per_epoch} steps per epoch, the data now gives "
              f"{steps_per_epoch} (other images, batch size or ranks): continuing after epoch {done}, on the LR "
              "step of that epoch's end", flush=True)
    opt_state["global_step"] = ms.Parameter(ms.Tensor([start], ms.int32), name="global_step")
    return TrainingState(start, opt_state, best, monitor)


def read_best_top1(best_path):
    """The val_top1 recorded in a best checkpoint; -1 when it cannot be read (it is then replaced)."""
    try:
        params = read_checkpoint(best_path)
        return float(_entry(params["val_top1"])) if "val_top1" in params else -1.0
    except ValueError as exc:
        print(f"warning: {exc}; the best checkpoint will be replaced", flush=True)
        return -1.0
