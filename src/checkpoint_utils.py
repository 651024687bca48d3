"""Loading weights into the network, with errors that name what does not fit.

``load_pretrained`` is the one door for weights: our own training checkpoints,
the original MindSpore model-zoo checkpoint (MindSpore Hub
"shufflenetv1_imagenet2012") and Megvii's weights converted with
``tools/convert_megvii.py``. Optimizer state in the file (``moments.*``,
``learning_rate``, ``global_step``, ...) is ignored here; resuming training
restores it separately.

The model-zoo network stored each grouped 1x1 convolution as ``g`` separate
convolutions (``<conv>.convs.{k}.weight``, each ``(out/g, in/g, 1, 1)``, piece
``k`` computing the k-th block of output channels from the k-th block of input
channels). That is exactly a grouped convolution whose weight is the pieces
joined along the output axis, which is what ``load_pretrained`` builds.
"""
import os
import re

import numpy as np
import mindspore as ms

__all__ = ["CheckpointError", "load_pretrained", "read_checkpoint", "read_network_options", "adopt_network_options",
           "join_group_pieces", "CLASSIFIER_PREFIX", "NETWORK_OPTION_KEYS"]

CLASSIFIER_PREFIX = "classifier."
# Config keys a checkpoint may carry as string entries (save_checkpoint(..., append_dict=...)),
# because its weights only compute the intended function with them (e.g. Megvii's converted
# weights need symmetric pooling and BGR 0-255 input). eval.py / export.py adopt them.
NETWORK_OPTION_KEYS = ("pool_pad", "input_format")
# "<conv>.convs.<k>.weight": piece k of a grouped conv in the model-zoo layout.
_GROUP_PIECE = re.compile(r"^(?P<conv>.+)\.convs\.(?P<index>\d+)\.weight$")
_TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with this network; the message says why."""


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


def join_group_pieces(params, wanted_names, ckpt_path="checkpoint"):
    """Grouped-conv weights of the model-zoo layout, joined: ``{"<conv>.weight": Parameter}``.

    Only convs whose joined name is in ``wanted_names`` and absent from ``params`` are joined,
    so optimizer copies (``moments.*.convs.*``) are left alone.

    Raises:
        CheckpointError: a piece missing between others, or pieces whose shapes cannot be joined.
    """
    pieces = {}
    for name, value in params.items():
        match = _GROUP_PIECE.match(name)
        if match is None:
            continue
        joined = f"{match['conv']}.weight"
        if joined in wanted_names and joined not in params:
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
        if isinstance(params.get("model_size"), str) and "group" in params:
            hint = (f"it records model_size={params['model_size']} group={int(params['group'].asnumpy())}: "
                    "pass those")
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


def read_network_options(ckpt_path, params=None):
    """The config values recorded in a checkpoint (see ``NETWORK_OPTION_KEYS``); {} for most files."""
    params = read_checkpoint(ckpt_path) if params is None else params
    return {key: params[key] for key in NETWORK_OPTION_KEYS if isinstance(params.get(key), str)}


def adopt_network_options(cfg, ckpt_path):
    """Set in ``cfg`` the options recorded in ``ckpt_path`` (its weights need them), saying so.

    Call before the data pipeline and the network are built.
    """
    for key, value in read_network_options(ckpt_path).items():
        if cfg[key] != value:
            print(f"using {key}={value} recorded in {ckpt_path}", flush=True)
            cfg[key] = value
