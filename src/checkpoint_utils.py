"""Loading weights into the network, with errors that name what does not fit.

``load_pretrained`` is the one door for weights: our own training checkpoints and
pretrained ones. Optimizer state in the file (``moments.*``, ``learning_rate``,
``global_step``, ...) is ignored here; resuming training restores it separately.
"""
import os

import mindspore as ms

__all__ = ["CheckpointError", "load_pretrained", "read_checkpoint", "read_network_options",
           "CLASSIFIER_PREFIX", "NETWORK_OPTION_KEYS"]

CLASSIFIER_PREFIX = "classifier."
# Config keys a checkpoint may carry as string entries (save_checkpoint(..., append_dict=...)),
# because its weights only compute the intended function with them (e.g. Megvii's converted
# weights need symmetric pooling and BGR 0-255 input). eval.py / export.py adopt them.
NETWORK_OPTION_KEYS = ("pool_pad", "input_format")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with this network; the message says why."""


def read_checkpoint(ckpt_path):
    """Read a ``.ckpt`` file into a name -> Parameter dict, with a clear error when it cannot."""
    if not ckpt_path:
        raise CheckpointError("no checkpoint given; pass --ckpt_path PATH_TO.ckpt")
    if not os.path.isfile(ckpt_path):
        raise CheckpointError(f"checkpoint {ckpt_path!r} does not exist (or is not a file)")
    try:
        return ms.load_checkpoint(ckpt_path)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError with a long C++ trace
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {ckpt_path!r} cannot be read: it is damaged or not a "
                              f"MindSpore checkpoint ({first_line})") from exc


def load_pretrained(net, ckpt_path, allow_classifier_mismatch=False):
    """Load the weights of ``ckpt_path`` into ``net``.

    Args:
        net (Cell): the network (ShuffleNetV1).
        ckpt_path (str): a MindSpore checkpoint.
        allow_classifier_mismatch (bool): when the checkpoint's classifier has another class
            count, keep the network's freshly initialised classifier instead of failing
            (transfer learning).

    Returns:
        dict with ``loaded`` (names loaded) and ``skipped`` (list of (name, reason)).

    Raises:
        CheckpointError: unreadable file, a parameter of the network missing from the
            checkpoint, or a shape that does not match (named, with both shapes).
    """
    params = read_checkpoint(ckpt_path)
    wanted = {name: p for name, p in net.parameters_and_names()}
    to_load, skipped, missing, mismatched = {}, [], [], []
    for name, param in wanted.items():
        if name not in params:
            missing.append(name)
            continue
        src = params[name]
        if tuple(src.shape) != tuple(param.shape):
            if allow_classifier_mismatch and name.startswith(CLASSIFIER_PREFIX):
                skipped.append((name, f"checkpoint shape {tuple(src.shape)} != network shape "
                                      f"{tuple(param.shape)} (different class count)"))
                continue
            mismatched.append(f"{name}: checkpoint {tuple(src.shape)}, network {tuple(param.shape)}")
            continue
        to_load[name] = src
    if mismatched:
        raise CheckpointError(f"checkpoint {ckpt_path!r} does not fit this network "
                              f"(another model_size/group/num_classes?): " + "; ".join(mismatched[:5])
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
