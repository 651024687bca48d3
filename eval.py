"""Evaluate a checkpoint: python eval.py --eval_dataset_path ROOT --ckpt_path CKPT [--key value ...]

Steps: config -> context -> data -> network + checkpoint -> Model.eval -> print and append
to eval_log.txt (next to the checkpoint) the original's line
``result:{'Loss': ..., 'Top_1_Acc': ..., 'Top_5_Acc': ...}, ckpt:'...', time: ...``.
"""
import os
import sys
import time

import mindspore as ms
from mindspore.train import Model

from src.checkpoint_utils import CheckpointError, adopt_network_options, load_pretrained
from src.crossentropysmooth import CrossEntropySmooth
from src.dataset import DatasetError, check_num_classes, class_names, create_dataset
from src.metrics import eval_metrics
from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id, use_device
from src.model_utils.errors import run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper
from src.model_factory import create_network


def build_eval_dataset(cfg):
    """The validation data: eval_dataset_path, or the validation split of dataset_path (transfer learning)."""
    batch = cfg.eval_batch_size or cfg.batch_size
    if cfg.dataset_path and not cfg.eval_dataset_path:
        from transfer_dataset_process import create_flower_dataset  # pylint: disable=import-outside-toplevel
        _, eval_ds, names = create_flower_dataset(cfg.dataset_path, batch_size=cfg.batch_size, eval_batch_size=batch,
                                              image_size=cfg.image_size, seed=cfg.seed,
                                              num_parallel_workers=cfg.num_parallel_workers,
                                              input_format=cfg.input_format)
        check_num_classes(names, cfg.num_classes, cfg.dataset_path)
        return eval_ds
    if not cfg.eval_dataset_path:
        raise DatasetError("no evaluation data: pass --eval_dataset_path ROOT (ROOT/<class>/<image>)")
    check_num_classes(class_names(cfg.eval_dataset_path), cfg.num_classes, cfg.eval_dataset_path)
    return create_dataset(cfg.eval_dataset_path, do_train=False, batch_size=batch, image_size=cfg.image_size,
                          num_parallel_workers=cfg.num_parallel_workers, input_format=cfg.input_format,
                          seed=cfg.seed)


def default_ckpt(cfg):
    """Without --ckpt_path, transfer learning evaluates its best checkpoint."""
    if cfg.ckpt_path:
        return cfg.ckpt_path
    if cfg.dataset_path:
        return os.path.join(cfg.save_ckpt_path, "shufflenetv1_transfer_best.ckpt")
    raise CheckpointError("no checkpoint given; pass --ckpt_path PATH_TO.ckpt")


def run_eval(cfg):
    """Evaluate ``cfg.ckpt_path``; returns the result dict."""
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "GRAPH" else ms.PYNATIVE_MODE)
    use_device(cfg.device_target, get_device_id(cfg.device_id))
    ckpt = default_ckpt(cfg)
    adopt_network_options(cfg, ckpt)
    dataset = build_eval_dataset(cfg)
    net = create_network(cfg)
    load_pretrained(net, ckpt)
    net.set_train(False)
    loss = CrossEntropySmooth(num_classes=cfg.num_classes, smooth_factor=cfg.label_smooth_factor)
    model = Model(net, loss_fn=loss, metrics=eval_metrics())
    start = time.time()
    result = model.eval(dataset, dataset_sink_mode=False)
    elapsed = time.time() - start
    line = f"result:{result}, ckpt:'{os.path.abspath(ckpt)}', time: {elapsed * 1000:.3f} ms"
    print(line, flush=True)
    log_path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "eval_log.txt")
    try:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        log_path = os.path.abspath("eval_log.txt")
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    print(f"appended to {log_path}", flush=True)
    return result


def main(argv=None):
    cfg = get_config(argv)
    code, _ = run_reporting_errors(moxing_wrapper(cfg)(run_eval), cfg)
    return code


if __name__ == "__main__":
    sys.exit(main())
