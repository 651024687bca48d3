"""Export a checkpoint for inference elsewhere:

    python export.py --ckpt_path CKPT --device_target CPU --file_format MINDIR --batch_size 1 \
        [--file_name NAME] [--image_size 224]

The network (model_size, group, num_classes, pooling) is the one the checkpoint records or its
shapes imply. Writes ``NAME.mindir`` / ``NAME.air`` / ``NAME.onnx`` (``--file_name x.onnx`` is
written as ``x.onnx``):

* MINDIR: MindSpore, MindSpore Lite and the Ascend 310 program in ``ascend310_infer/``
  (which feeds one image at a time: export it with ``--batch_size 1``).
* AIR: Ascend only (``--device_target Ascend`` on an Ascend machine).
* ONNX (opset 11): onnxruntime, e.g. ``infer_onnx.py``. The file has the fixed input shape
  (``--batch_size``, 3, ``--image_size``, ``--image_size``): MindSpore 2.10 can mark the input's
  batch axis dynamic, but the output keeps the traced batch and onnxruntime warns about it on
  every other batch size. ``infer_onnx.py`` pads a last partial batch.

Steps: config -> context -> network (MindSpore's standard operators) + checkpoint -> export.
"""
import os
import sys

from src.exporter import build_export_network, export_network
from src.model_utils.config import get_config
from src.model_utils.device_adapter import init_context
from src.model_utils.errors import UsageError, run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper


def run_export(cfg):
    """Export ``cfg.ckpt_path`` as configured; returns the path written."""
    # 1. Context.
    try:
        init_context(cfg, distributed=False)
    except UsageError as exc:
        raise UsageError(f"{exc} (MINDIR and ONNX export run on CPU)") from None
    # 2. Network and weights.
    net = build_export_network(cfg)
    # 3. Export.
    try:
        path = export_network(net, cfg.file_name, cfg.file_format, cfg.batch_size, cfg.image_size)
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"exporting {cfg.file_format} failed: {first}") from exc
    print(f"exported {os.path.abspath(path)}: {cfg.file_format}, input (batch {cfg.batch_size}, 3, {cfg.image_size}, "
          f"{cfg.image_size}) float32, ShuffleNetV1 {cfg.model_size} g{cfg.group}, {cfg.num_classes} classes, "
          f"pool_pad={cfg.pool_pad}", flush=True)
    if cfg.input_format != "rgb_normalized":
        print(f"note: this network expects input_format={cfg.input_format} input; pass --input_format "
              f"{cfg.input_format} to infer_onnx.py and preprocess.py", flush=True)
    return path


def main(argv=None):
    cfg = get_config(argv, purpose="export", prog="export.py")
    code, _ = run_reporting_errors(moxing_wrapper(cfg, "export")(run_export), cfg)
    return code


if __name__ == "__main__":
    sys.exit(main())
