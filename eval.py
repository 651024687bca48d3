"""Evaluate a checkpoint: python eval.py --eval_dataset_path ROOT --ckpt_path CKPT [--key value ...]

The network (model_size, group, num_classes, pooling, input format) is the one the checkpoint
records or its shapes imply; the command line only has to name the data and the file.

Steps: config -> context -> checkpoint -> data -> network + weights -> Model.eval -> print and
append to eval_log.txt (next to the checkpoint; on ModelArts in output_path) the original's line
``result:{'Loss': ..., 'Top_1_Acc': ..., 'Top_5_Acc': ...}, ckpt:'...', time: ...``.
"""
import os
import sys
import time

from mindspore.train import Model

from src.checkpoint_utils import adopt_checkpoint_config, checkpoint_to_evaluate, load_pretrained
from src.crossentropysmooth import CrossEntropySmooth
from src.dataset import create_eval_dataset
from src.metrics import eval_metrics
from src.model_factory import create_network
from src.model_utils.config import get_config
from src.model_utils.device_adapter import init_context
from src.model_utils.errors import run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper


def append_eval_log(cfg, ckpt, line):
    """Append ``line`` to eval_log.txt next to the checkpoint (or in the working folder); returns the path."""
    folder = cfg.output_path if cfg.enable_modelarts else os.path.dirname(os.path.abspath(ckpt))
    for path in (os.path.join(folder, "eval_log.txt"), os.path.abspath("eval_log.txt")):
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            return path
        except OSError:
            continue
    raise ValueError(f"cannot append the result to eval_log.txt in {folder!r} or the working folder")


def run_eval(cfg):
    """Evaluate the checkpoint of ``cfg``; returns the result dict."""
    # 1. Context, checkpoint (what network it holds), data.
    init_context(cfg, distributed=False)
    ckpt = checkpoint_to_evaluate(cfg)
    adopt_checkpoint_config(cfg, ckpt, "eval")
    dataset = create_eval_dataset(cfg)
    # 2. Network and weights.
    net = create_network(cfg)
    load_pretrained(net, ckpt)
    net.set_train(False)
    # 3. Evaluate, report.
    loss = CrossEntropySmooth(num_classes=cfg.num_classes, smooth_factor=cfg.label_smooth_factor)
    model = Model(net, loss_fn=loss, metrics=eval_metrics())
    start = time.time()
    result = model.eval(dataset, dataset_sink_mode=False)
    elapsed = time.time() - start
    line = f"result:{result}, ckpt:'{os.path.abspath(ckpt)}', time: {elapsed * 1000:.3f} ms"
    print(line, flush=True)
    print(f"appended to {append_eval_log(cfg, ckpt, line)}", flush=True)
    return result


def main(argv=None):
    cfg = get_config(argv, purpose="eval", prog="eval.py")
    code, _ = run_reporting_errors(moxing_wrapper(cfg, "eval")(run_eval), cfg)
    return code


if __name__ == "__main__":
    sys.exit(main())
