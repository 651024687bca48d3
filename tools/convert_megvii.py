"""Convert Megvii's PyTorch ShuffleNetV1 weights (the ShuffleNet-Series repository) into a
MindSpore checkpoint for our network (src/shufflenetv1.py).

Usage:
    python tools/convert_megvii.py --pth ShuffleNetV1_2.0x_g3.pth.tar --model_size 2.0x \\
        --group 3 --output shufflenetv1_2.0x_g3_megvii.ckpt

How their network differs from ours, and what the conversion does about it:
- Their unit is [1x1 conv, BN, ReLU, 3x3 depthwise conv, BN] -> channel shuffle -> [1x1 conv,
  BN]; ours shuffles before the depthwise conv. Depthwise conv and BN act per channel, so
  shuffling first computes the same function once their channels are permuted by the shuffle.
- Their max/avg pooling pads 1 on every side: the converted network needs
  ``pool_pad="symmetric"``.
- Their classifier has no bias: ours gets a zero bias.
- Their weights expect BGR images in 0-255 without mean/std normalisation:
  ``input_format="bgr_255"``.
The two options are recorded in the checkpoint as string entries (see
``src.checkpoint_utils.NETWORK_OPTION_KEYS``); eval.py and export.py adopt them.

torch is needed only here (``pip install torch``, the CPU build is enough); it is imported
inside the functions that read the file, so importing this module does not need it.
"""
import argparse
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as `python tools/convert_megvii.py`: make `src` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.shufflenetv1 import GROUPS, MODEL_SIZES, STAGE_CHANNELS, STAGE_REPEATS  # noqa: E402
from src.model_utils.files import replace_when_done  # noqa: E402

__all__ = ["ConversionError", "CONVERTED_OPTIONS", "read_state_dict", "megvii_shapes",
           "check_variant", "convert_state_dict", "convert", "main"]

# Config values the converted weights need; saved with them and adopted by eval.py / export.py.
CONVERTED_OPTIONS = {"pool_pad": "symmetric", "input_format": "bgr_255"}
_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}


class ConversionError(ValueError):
    """A file or argument the conversion cannot use; the message says what and what would fit.

    ``usage``: a wrong argument found before any work (exit code 2, the repo's rule), else an
    input unusable during the work (exit code 1).
    """

    def __init__(self, message, usage=False):
        super().__init__(message)
        self.usage = usage


def _import_torch():
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise ConversionError("reading Megvii's .pth.tar needs PyTorch, which is not installed; "
                              "install it with `pip install torch` (the CPU build is enough)") from exc
    return torch


def read_state_dict(pth_path):
    """Read a ``.pth.tar`` with torch's safe loader into ``{name: float32 numpy array}``.

    Accepts a state_dict or a dict holding one under ``"state_dict"`` (Megvii's training
    script saves that form); a ``module.`` prefix (DataParallel) is removed. BN's
    ``num_batches_tracked`` counters are dropped.
    """
    if not os.path.isfile(pth_path):
        raise ConversionError(f"--pth {pth_path!r} does not exist (or is not a file)", usage=True)
    torch = _import_torch()
    try:
        obj = torch.load(pth_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError, ... depending on the damage
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConversionError(f"--pth {pth_path!r} cannot be read with torch.load(weights_only=True): it "
                              f"is damaged, not a PyTorch file, or holds Python objects other than "
                              f"tensors ({first_line})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"--pth {pth_path!r} holds a {type(obj).__name__}, not a state_dict "
                              f"(a dict of parameter name -> tensor, or such a dict under 'state_dict')")
    state = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ConversionError(f"--pth {pth_path!r} is not a state_dict: entry {name!r} holds a "
                                  f"{type(value).__name__}, not a tensor")
        name = name[len("module."):] if name.startswith("module.") else name
        if name.endswith("num_batches_tracked"):
            continue
        state[name] = value.detach().cpu().float().numpy()
    return state


def _megvii_units(model_size, group):
    """(unit index, in channels, out channels, mid channels, first 1x1 groups) of their network."""
    stem, *stages = STAGE_CHANNELS[(group, model_size)]
    units, inp = [], stem
    for stage, (oup, repeats) in enumerate(zip(stages, STAGE_REPEATS)):
        for i in range(repeats):
            stride = 2 if i == 0 else 1
            units.append((len(units), inp, oup - inp if stride == 2 else oup, oup // 4,
                          1 if stage == 0 and i == 0 else group))
            inp = oup
    return stem, units, inp


def megvii_shapes(model_size, group, num_classes=1000):
    """The state_dict names and shapes of their ShuffleNetV1 variant (no BN counters)."""
    stem, units, width = _megvii_units(model_size, group)

    def bn(prefix, channels):
        return {f"{prefix}.{key}": (channels,) for key in _BN_NAMES}

    shapes = {"first_conv.0.weight": (stem, 3, 3, 3), **bn("first_conv.1", stem)}
    for index, inp, outputs, mid, groups_1 in units:
        unit = f"features.{index}"
        shapes[f"{unit}.branch_main_1.0.weight"] = (mid, inp // groups_1, 1, 1)
        shapes.update(bn(f"{unit}.branch_main_1.1", mid))
        shapes[f"{unit}.branch_main_1.3.weight"] = (mid, 1, 3, 3)
        shapes.update(bn(f"{unit}.branch_main_1.4", mid))
        shapes[f"{unit}.branch_main_2.0.weight"] = (outputs, mid // group, 1, 1)
        shapes.update(bn(f"{unit}.branch_main_2.1", outputs))
    shapes["classifier.0.weight"] = (num_classes, width)
    return shapes


def _differences(state, expected):
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    wrong = [f"{name} has shape {tuple(state[name].shape)}, expected {expected[name]}"
             for name in expected if name in state and tuple(state[name].shape) != expected[name]]
    return missing, unexpected, wrong


def check_variant(state, model_size, group, source="the state_dict"):
    """Check ``state`` against their (model_size, group) variant; returns its class count.

    Raises:
        ConversionError: naming the missing, unexpected or wrongly shaped entries, and the
            variant whose shapes do match, if one does.
    """
    if (group, model_size) not in STAGE_CHANNELS:
        raise ConversionError(f"--model_size {model_size} --group {group} is not a ShuffleNetV1 variant; "
                              f"model_size is one of {list(MODEL_SIZES)}, group one of {list(GROUPS)}")
    classifier = state.get("classifier.0.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None and classifier.ndim == 2 else 1000
    missing, unexpected, wrong = _differences(state, megvii_shapes(model_size, group, num_classes))
    if not (missing or unexpected or wrong):
        return num_classes
    problems = []
    if wrong:
        problems.append("; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    if missing:
        problems.append(f"{len(missing)} entries missing, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected entries, e.g. {', '.join(unexpected[:3])}")
    matches = [f"--model_size {size} --group {g}" for (g, size) in sorted(STAGE_CHANNELS)
               if not any(_differences(state, megvii_shapes(size, g, num_classes)))]
    if matches:
        advice = f"its shapes match {' or '.join(matches)}"
    else:
        advice = ("it matches none of the 8 ShuffleNetV1 variants (is it Megvii's ShuffleNetV1, "
                  "not V2/Plus/another model?)")
    # (arguments that contradict the file are a wrong command line, exit 2; a file of no variant, exit 1)
    raise ConversionError(f"{source} does not match Megvii's ShuffleNetV1 {model_size} g{group}: "
                          + "; ".join(problems) + f". {advice}", usage=bool(matches))


def _shuffle_order(channels, group):
    """``order[j]``: the input channel our channel shuffle puts at position j."""
    return np.arange(channels).reshape(channels // group, group).T.reshape(-1)


def convert_state_dict(state, model_size, group):
    """Their checked state_dict -> ``{our parameter name: float32 array}``."""
    num_classes = check_variant(state, model_size, group)
    _, units, _ = _megvii_units(model_size, group)
    out = {}

    def copy_bn(src, dst, order=None):
        for theirs, ours in _BN_NAMES.items():
            value = state[f"{src}.{theirs}"]
            out[f"{dst}.{ours}"] = value if order is None else value[order]

    out["first_conv.0.weight"] = state["first_conv.0.weight"]
    copy_bn("first_conv.1", "first_conv.1")
    for index, _, _, mid, _ in units:
        unit = f"features.{index}"
        # Theirs: y = shuffle(dw(x)), channel j of y is channel order[j] of dw(x). Ours:
        # y = dw'(shuffle(x)), channel j of y is dw'_j(x[order[j]]). Same when dw'_j = dw_order[j].
        order = _shuffle_order(mid, group) if group > 1 else None
        out[f"{unit}.branch_main_1.0.weight"] = state[f"{unit}.branch_main_1.0.weight"]
        copy_bn(f"{unit}.branch_main_1.1", f"{unit}.branch_main_1.1")
        depthwise = state[f"{unit}.branch_main_1.3.weight"]
        out[f"{unit}.branch_main_2.0.weight"] = depthwise if order is None else depthwise[order]
        copy_bn(f"{unit}.branch_main_1.4", f"{unit}.branch_main_2.1", order)
        out[f"{unit}.branch_main_2.2.weight"] = state[f"{unit}.branch_main_2.0.weight"]
        copy_bn(f"{unit}.branch_main_2.1", f"{unit}.branch_main_2.3")
    out["classifier.weight"] = state["classifier.0.weight"]
    out["classifier.bias"] = np.zeros((num_classes,), np.float32)
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in out.items()}


def convert(pth_path, model_size, group, output):
    """Read, check, convert and save; then load the result into our network as a check.

    Returns:
        dict with ``output``, ``num_classes`` and ``num_params``.
    """
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from src.checkpoint_utils import CheckpointError, load_pretrained  # pylint: disable=import-outside-toplevel
    from src.shufflenetv1 import ShuffleNetV1  # pylint: disable=import-outside-toplevel

    if not output.endswith(".ckpt"):
        raise ConversionError(f"--output {output!r} must end with .ckpt (MindSpore reads only .ckpt files)",
                              usage=True)
    if os.path.abspath(output) == os.path.abspath(pth_path):
        raise ConversionError(f"--output {output!r} is the input file; choose another name", usage=True)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise ConversionError(f"--output {output!r}: its folder does not exist", usage=True)
    state = read_state_dict(pth_path)
    check_variant(state, model_size, group, source=f"--pth {pth_path!r}")
    params = convert_state_dict(state, model_size, group)
    num_classes = params["classifier.weight"].shape[0]
    # Write next to the target and rename, so a failure never leaves a half-written --output.
    with replace_when_done(output, f"{output}.partial.ckpt") as partial:
        # recorded like train.py's checkpoints: eval.py, export.py and train.py take them from the file
        recorded = {"model_size": model_size, "group": group, "num_classes": num_classes, **CONVERTED_OPTIONS}
        ms.save_checkpoint([{"name": name, "data": ms.Tensor(value)} for name, value in params.items()],
                           partial, append_dict=recorded)
        net = ShuffleNetV1(model_size, group, num_classes=num_classes,
                           pool_pad=CONVERTED_OPTIONS["pool_pad"])
        try:
            load_pretrained(net, partial)
        except CheckpointError as exc:  # a bug of this tool, not of the user's file
            raise ConversionError(f"the converted weights do not load into ShuffleNetV1 {model_size} "
                                  f"g{group}: {exc}") from exc
    return {"output": output, "num_classes": num_classes, "num_params": len(params)}


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Convert Megvii's ShuffleNetV1 .pth.tar into a MindSpore .ckpt for this repository.")
    parser.add_argument("--pth", required=True, help="Megvii's weights, e.g. ShuffleNetV1_2.0x_g3.pth.tar")
    parser.add_argument("--model_size", required=True, choices=MODEL_SIZES, help="width multiplier")
    parser.add_argument("--group", required=True, type=int, choices=GROUPS, help="groups of the 1x1 convs")
    parser.add_argument("--output", required=True, help="the MindSpore checkpoint to write (.ckpt)")
    return parser.parse_args(argv)


def main(argv=None):
    """1. arguments -> 2. read and check the state_dict -> 3. convert and save -> 4. say how to use it."""
    args = _parse_args(argv)
    try:
        result = convert(args.pth, args.model_size, args.group, args.output)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    options = " ".join(f"{key}={value}" for key, value in CONVERTED_OPTIONS.items())
    print(f"wrote {result['output']}: ShuffleNetV1 {args.model_size} g{args.group}, "
          f"{result['num_classes']} classes, {result['num_params']} parameters; recorded {options}\n"
          f"evaluate with: python eval.py --ckpt_path {result['output']} --eval_dataset_path PATH_TO_IMAGENET_VAL "
          "--device_target CPU  (or GPU / Ascend; the variant and options are read from the file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
