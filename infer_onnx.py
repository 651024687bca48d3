"""Accuracy of an exported ONNX file with onnxruntime over an ImageNet-style folder:

    python infer_onnx.py --onnx_path shufflenetv1.onnx --dataset_path ROOT [--input_format rgb_normalized]

Steps: ONNX session -> evaluation data (``src/dataset.py``: the transforms of eval.py, every
image scored, labels from the sorted class folders) -> batches through onnxruntime ->
``Top_1_Acc=..%, Top_5_Acc=..%``, counted by the one rule of ``src/metrics.py`` (that of
eval.py and postprocess.py).

The batch and image size come from the file (MindSpore exports ONNX with a fixed input
shape); a last partial batch is padded with zeros and the padding's outputs dropped.
"""
import argparse
import os
import sys
import time

import numpy as np

from src.dataset import INPUT_FORMATS, class_names, create_dataset
from src.metrics import format_accuracy, topk_correct
from src.model_utils.errors import UsageError, run_reporting_errors

__all__ = ["OnnxInferenceError", "PROVIDERS", "open_session", "input_geometry", "run_batches", "evaluate_onnx",
           "main"]

PROVIDERS = {"CPU": "CPUExecutionProvider", "GPU": "CUDAExecutionProvider"}


class OnnxInferenceError(ValueError):
    """An ONNX file or option that cannot be used; the message says which."""


def open_session(onnx_path, device_target="CPU"):
    """An onnxruntime session of ``onnx_path`` on ``device_target`` (CPU or GPU)."""
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    if device_target not in PROVIDERS:
        raise UsageError(f"device_target={device_target!r} is not supported; choose one of {list(PROVIDERS)}")
    if not os.path.isfile(onnx_path):
        raise UsageError(f"onnx_path={onnx_path!r} is not a file; export one with: python export.py "
                         f"--ckpt_path CKPT --device_target CPU --file_format ONNX --batch_size 32")
    provider = PROVIDERS[device_target]
    if provider not in ort.get_available_providers():
        raise OnnxInferenceError(f"device_target={device_target} needs onnxruntime's {provider}, which this "
                                 f"onnxruntime lacks (it has {ort.get_available_providers()}); install "
                                 f"onnxruntime-gpu or use --device_target CPU")
    try:
        return ort.InferenceSession(onnx_path, providers=[provider])
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxInferenceError(f"onnx_path={onnx_path!r} cannot be loaded by onnxruntime: {first}") from exc


def input_geometry(session):
    """(input name, batch size, image size) of a session with one (B, 3, S, S) image input."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise OnnxInferenceError(f"the ONNX file has {len(inputs)} inputs; an exported ShuffleNetV1 has one")
    shape = inputs[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape) or shape[1] != 3 or shape[2] != shape[3]:
        raise OnnxInferenceError(f"the ONNX input {inputs[0].name!r} has shape {shape}; expected a fixed "
                                 f"(batch, 3, size, size) as written by export.py")
    return inputs[0].name, shape[0], shape[2]


def run_batches(session, images):
    """Logits of ``images`` (N, 3, S, S) through a fixed-batch session, padding the last batch."""
    name, batch, _ = input_geometry(session)
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        count = len(chunk)
        if count < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - count,) + chunk.shape[1:], chunk.dtype)])
        outputs.append(session.run(None, {name: np.ascontiguousarray(chunk, np.float32)})[0][:count])
    return np.concatenate(outputs)


def evaluate_onnx(onnx_path, dataset_path, input_format="rgb_normalized", device_target="CPU",
                  num_parallel_workers=0, log_every=10):
    """Top-1/Top-5 of the ONNX file over every image of ``dataset_path``.

    Returns:
        dict with ``Top_1_Acc``, ``Top_5_Acc`` (fractions), ``images`` and ``classes``.

    Raises:
        OnnxInferenceError, DatasetError: a file, folder or option that cannot be used.
    """
    if not os.path.isdir(dataset_path):
        raise UsageError(f"dataset_path={dataset_path!r} is not a directory; expected ImageNet-style "
                         "ROOT/<class>/<image>")
    session = open_session(onnx_path, device_target)
    _, batch, image_size = input_geometry(session)
    num_folders = len(class_names(dataset_path))
    data = create_dataset(dataset_path, do_train=False, batch_size=batch, image_size=image_size,
                          num_parallel_workers=num_parallel_workers, input_format=input_format)
    steps = data.get_dataset_size()
    print(f"{onnx_path}: batch {batch}, {image_size}x{image_size} input; {steps} batches of {dataset_path} "
          f"({num_folders} classes)", flush=True)
    top1 = top5 = seen = 0
    start = time.time()
    for step, item in enumerate(data.create_dict_iterator(output_numpy=True, num_epochs=1), 1):
        logits = run_batches(session, item["image"])
        labels = item["label"].astype(np.int64)
        classes = logits.shape[1]
        if step == 1 and num_folders > classes:
            raise OnnxInferenceError(f"{dataset_path!r} has {num_folders} class folders but the network has "
                                     f"{classes} outputs; does the data set match the model?")
        top1 += topk_correct(logits, labels, 1)
        top5 += topk_correct(logits, labels, 5)
        seen += len(labels)
        if step % log_every == 0 or step == steps:
            print(f"batch {step}/{steps}: {seen} images, running Top_1_Acc={top1 / seen * 100:.2f}%, "
                  f"{seen / (time.time() - start):.1f} images/s", flush=True)
    return {"Top_1_Acc": top1 / seen, "Top_5_Acc": top5 / seen, "images": seen, "classes": classes}


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Top-1/Top-5 of an exported ONNX file with onnxruntime.")
    parser.add_argument("--onnx_path", required=True, help="ONNX file written by export.py")
    parser.add_argument("--dataset_path", required=True, help="ImageNet-style folder ROOT/<class>/<image>")
    parser.add_argument("--input_format", default="rgb_normalized", choices=INPUT_FORMATS,
                        help="rgb_normalized (model zoo) or bgr_255 (converted Megvii weights)")
    parser.add_argument("--device_target", default="CPU", choices=sorted(PROVIDERS),
                        help="onnxruntime device (CPU; GPU needs onnxruntime-gpu)")
    parser.add_argument("--num_parallel_workers", type=int, default=0, help="data workers (0 = automatic)")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    code, result = run_reporting_errors(evaluate_onnx, args.onnx_path, args.dataset_path, args.input_format,
                                        args.device_target, args.num_parallel_workers)
    if code:
        return code
    print(format_accuracy(result["Top_1_Acc"], result["Top_5_Acc"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
