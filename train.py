"""Train ShuffleNetV1: python train.py [--config_path YAML] [--key value ...]

Steps: config -> context -> data -> network (+ resume) -> loss, LR, optimizer -> Model -> train.
"""
import os
import shutil
import sys
import time

import mindspore as ms
from mindspore import nn
from mindspore.train import Model
from mindspore.train.loss_scale_manager import FixedLossScaleManager

from src.callbacks import (CheckpointSaver, RunLog, RunLogWriter, StopOnSignal, TrainingStopped, TrainMonitor,
                           ValAccMonitor, list_checkpoints, remove_unfinished_writes, verify_checkpoint)
from src.checkpoint_utils import NETWORK_OPTION_KEYS, adopt_network_options, load_pretrained, read_checkpoint
from src.crossentropysmooth import CrossEntropySmooth
from src.dataset import check_num_classes, class_names, create_dataset, default_num_workers
from src.lr_generator import get_lr
from src.metrics import eval_metrics
from src.model_utils.config import get_config, load_config, save_config
from src.model_utils.device_adapter import get_device_id, use_device
from src.model_utils.errors import run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper
from src.model_factory import create_network

AMP_LEVELS = ("O0", "O1", "O2", "O3")
DEVICE_TARGETS = ("Ascend", "GPU", "CPU")


class SetupError(ValueError):
    """A configuration that cannot start training; the message says what to change."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving its state."""


def check_free_space(directory, net, keep_max):
    """Fail before training when the disk cannot hold the checkpoints the run will keep."""
    weights = sum(p.size for p in net.get_parameters()) * 4
    # weights + momentum (about 2x the weights) per file; keep_max files plus one being written
    needed = weights * 2 * (keep_max + 1) + (16 << 20)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise SetupError(f"not enough disk space in {directory}: {free / 2**20:.0f} MiB free, the run needs about "
                         f"{needed / 2**20:.0f} MiB for {keep_max} checkpoints; free some space, lower "
                         "--keep_checkpoint_max or choose another --save_ckpt_path")


def set_context(cfg):
    """Device, execution mode and (when distributed) the communication group; returns (rank, group_size)."""
    if cfg.device_target not in DEVICE_TARGETS:
        raise SetupError(f"device_target={cfg.device_target!r} is not supported; choose one of {list(DEVICE_TARGETS)}")
    if cfg.mode not in ("GRAPH", "PYNATIVE"):
        raise SetupError(f"mode={cfg.mode!r} is not supported; choose GRAPH or PYNATIVE")
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "GRAPH" else ms.PYNATIVE_MODE)
    rank, group_size = 0, 1
    if cfg.is_distributed:
        from mindspore.communication import get_group_size, get_rank, init  # pylint: disable=import-outside-toplevel
        if not any(os.getenv(k) for k in ("MS_ROLE", "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH",
                                           "OMPI_COMM_WORLD_RANK")):
            raise SetupError("is_distributed=True needs a launcher that starts one process per device: "
                             "scripts/run_distribute_train.sh (Ascend), scripts/run_distribute_train_gpu.sh (GPU) "
                             "or scripts/run_distribute_train_cpu.sh (CPU); for one device use --is_distributed False")
        if os.getenv("MS_ROLE"):  # msrun: MindSpore gives each rank its device
            use_device(cfg.device_target)
        else:  # rank table: DEVICE_ID from the launch script; mpirun: the local rank
            use_device(cfg.device_target,
                       int(os.getenv("OMPI_COMM_WORLD_LOCAL_RANK", str(get_device_id(cfg.device_id)))))
        init()
        rank, group_size = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=group_size)
    else:
        use_device(cfg.device_target, get_device_id(cfg.device_id))
    return rank, group_size


def output_dir(cfg, rank, group_size):
    """Checkpoint folder of this process (one sub-folder per rank when distributed), checked writable."""
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
        raise SetupError(f"save_ckpt_path {directory!r} is not writable ({exc.strerror}); choose a folder you "
                         "can write to with --save_ckpt_path") from exc
    return directory


def build_datasets(cfg, rank, group_size):
    """(train, eval or None) datasets: train/eval folders, or one folder split for transfer learning.

    Distributed, each rank trains on its own shard (1/group_size of the images; MindSpore pads the
    shards to equal length by repeating up to group_size - 1 images). Evaluation runs on rank 0 only.
    """
    workers = cfg.num_parallel_workers
    if not workers and group_size > 1:
        # the ranks on this machine share its cores (mpirun says how many are local; else all are assumed local)
        workers = default_num_workers(int(os.getenv("OMPI_COMM_WORLD_LOCAL_SIZE", str(group_size))))
    eval_batch = cfg.eval_batch_size or cfg.batch_size
    if cfg.dataset_path and not cfg.train_dataset_path:
        from transfer_dataset_process import create_flower_dataset  # pylint: disable=import-outside-toplevel
        train_ds, eval_ds, names = create_flower_dataset(
            cfg.dataset_path, batch_size=cfg.batch_size, eval_batch_size=eval_batch, image_size=cfg.image_size,
            seed=cfg.seed, num_parallel_workers=workers, input_format=cfg.input_format,
            num_shards=group_size, shard_id=rank)
        check_num_classes(names, cfg.num_classes, cfg.dataset_path)
        return train_ds, eval_ds
    if not cfg.train_dataset_path:
        raise SetupError("no training data: pass --train_dataset_path ROOT (ROOT/<class>/<image>), or "
                         "--dataset_path ROOT to split one folder for transfer learning")
    check_num_classes(class_names(cfg.train_dataset_path), cfg.num_classes, cfg.train_dataset_path)
    train_ds = create_dataset(cfg.train_dataset_path, do_train=True, batch_size=cfg.batch_size,
                              image_size=cfg.image_size, num_parallel_workers=workers, num_shards=group_size,
                              shard_id=rank, input_format=cfg.input_format, seed=cfg.seed)
    eval_ds = None
    if cfg.eval_interval > 0 and cfg.eval_dataset_path:
        check_num_classes(class_names(cfg.eval_dataset_path), cfg.num_classes, cfg.eval_dataset_path)
        eval_ds = create_dataset(cfg.eval_dataset_path, do_train=False, batch_size=eval_batch,
                                 image_size=cfg.image_size, num_parallel_workers=workers,
                                 input_format=cfg.input_format, seed=cfg.seed)
    return train_ds, eval_ds


def resolve_resume(cfg, directory):
    """The checkpoint named by ``resume``: a path, "auto" (newest in the run folder) or "" (none).

    A path that comes from the config file (transfer_config.yaml's pretrained weights) and does
    not exist means "from scratch", with a warning; a path given on the command line must exist.
    """
    if cfg.resume != "auto":
        if cfg.resume and not os.path.exists(cfg.resume) and cfg.get("config_path") \
                and load_config(cfg.config_path).resume == cfg.resume:
            print(f"warning: the pretrained checkpoint {cfg.resume!r} named in {cfg.config_path} does not exist: "
                  "training starts FROM SCRATCH (random weights), which needs far more epochs and images. To "
                  "fine-tune, put the MindSpore Hub weights shufflenetv1_imagenet2012 there (see README) or pass "
                  "--resume PATH; --resume \"\" trains from scratch without this warning", flush=True)
            return ""
        return cfg.resume
    found = list_checkpoints(directory)
    for epoch, step, path in reversed(found):
        problem = verify_checkpoint(path)
        if problem:
            print(f"warning: skipping damaged checkpoint {path}: {problem}", flush=True)
            continue
        print(f"resume auto: continuing from {path} (epoch {epoch}, step {step})", flush=True)
        return path
    print(f"resume auto: no checkpoint in {directory}; training from scratch", flush=True)
    return ""


def restore(net, cfg, path):
    """Load ``path`` into ``net``; returns (start_epoch, optimizer state dict, best val top-1).

    A checkpoint written by this train.py for the same network continues its run (epoch,
    momentum, step count); any other checkpoint only initialises the weights (pretrained),
    dropping the classifier when the class count differs.
    """
    if not path:
        print("no resume checkpoint: training from scratch (random initialisation)", flush=True)
        return 0, {}, -1.0
    report = load_pretrained(net, path, allow_classifier_mismatch=True)
    params = read_checkpoint(path)
    for name, reason in report["skipped"]:
        print(f"not loaded from {path}: {name}: {reason}", flush=True)
    if "epoch_num" in params and "step_num" in params and not report["skipped"]:
        epoch, step = int(params["epoch_num"].asnumpy()), int(params["step_num"].asnumpy())
        opt_state = {k: v for k, v in params.items() if k.startswith("moments.") or k == "global_step"}
        best = float(params["best_val_top1"].asnumpy()) if "best_val_top1" in params else -1.0
        steps_per_epoch = int(params["steps_per_epoch"].asnumpy()) if "steps_per_epoch" in params else step
        if step < steps_per_epoch:
            # Saved mid-epoch (SIGINT/SIGTERM): keep the weights, redo that epoch on the same LR steps.
            epoch -= 1
            opt_state["global_step"] = ms.Parameter(ms.Tensor([epoch * steps_per_epoch], ms.int32),
                                                    name="global_step")
            print(f"resuming {path}: saved at step {step}/{steps_per_epoch} of epoch {epoch + 1}; "
                  f"that epoch restarts with these weights", flush=True)
        print(f"resuming {path}: epoch {epoch} done, continuing to epoch {cfg.epoch_size}", flush=True)
        return epoch, opt_state, best
    print(f"initialised the network from {path} ({len(report['loaded'])} parameters)", flush=True)
    return 0, {}, -1.0


def best_of(best_path):
    """The val_top1 recorded in a best checkpoint; -1 when it cannot be read (it is then replaced)."""
    try:
        params = read_checkpoint(best_path)
        return float(params["val_top1"].asnumpy()) if "val_top1" in params else -1.0
    except ValueError as exc:
        print(f"warning: {exc}; the best checkpoint will be replaced", flush=True)
        return -1.0


def restore_optimizer(opt, state):
    """Copy momentum buffers and the step count into ``opt`` by exact name.

    (``load_param_into_net(opt, ...)`` is not used: in MindSpore 2.10 it also matches
    ``moments.<name>`` to the weight ``<name>`` and overwrites the weights with momenta.)
    """
    restored = 0
    for param in opt.get_parameters():
        if param.name in state and (param.name.startswith("moments.") or param.name == "global_step"):
            param.set_data(ms.Tensor(state[param.name].asnumpy(), param.dtype))
            restored += 1
    if restored != len(state):
        print(f"warning: restored {restored} of {len(state)} optimizer entries (the trainable parameters changed, "
              "e.g. freeze_backbone); the others start from zero", flush=True)


def build_optimizer(net, cfg, lr):
    """Momentum; weight decay on conv and dense weights only (not BN, not biases)."""
    params = net.trainable_params()
    if cfg.freeze_backbone:
        for param in net.get_parameters():
            if not param.name.startswith("classifier."):
                param.requires_grad = False
        params = [p for p in params if p.name.startswith("classifier.")]
    no_decay = [p for p in params if p.name.endswith(("gamma", "beta", "bias"))]
    decay = [p for p in params if not p.name.endswith(("gamma", "beta", "bias"))]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"order_params": params}]
    return nn.Momentum(groups, learning_rate=ms.Tensor(lr), momentum=cfg.momentum, loss_scale=cfg.loss_scale)


def check_amp(cfg):
    if cfg.amp_level not in AMP_LEVELS:
        raise SetupError(f"amp_level={cfg.amp_level!r} is not supported; choose one of {list(AMP_LEVELS)}")
    if cfg.device_target == "CPU" and cfg.amp_level != "O0":
        print(f"warning: amp_level={cfg.amp_level} on CPU runs but computes in fp32 (no speed-up); "
              "use --amp_level O0 on CPU", flush=True)


def run_train(cfg):
    """Train as configured; returns the path of the last checkpoint (or None)."""
    check_amp(cfg)
    # A bad schedule (mode, epochs, warm-up) is reported before any data or network is built.
    get_lr(cfg.lr_init, cfg.lr_end, cfg.lr_max, cfg.warmup_epochs, cfg.epoch_size, 1, cfg.lr_decay_mode)
    rank, group_size = set_context(cfg)
    ms.set_seed(cfg.seed)
    directory = output_dir(cfg, rank, group_size)
    for path in remove_unfinished_writes(directory):
        print(f"removed {path}: an unfinished checkpoint write of a killed run", flush=True)
    resume = resolve_resume(cfg, directory)
    if resume and os.path.isfile(resume):
        adopt_network_options(cfg, resume)  # e.g. converted Megvii weights: before data, network, config.yaml
    config_name = "config.yaml" if not os.path.exists(os.path.join(directory, "config.yaml")) \
        else f"config-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    save_config(cfg, directory, config_name)

    train_ds, eval_ds = build_datasets(cfg, rank, group_size)
    steps_per_epoch = train_ds.get_dataset_size()
    if steps_per_epoch == 0:
        raise SetupError(f"the training data has fewer images than one batch ({cfg.batch_size} per device); "
                         "lower --batch_size or add images")

    net = create_network(cfg)
    start_epoch, opt_state, best = restore(net, cfg, resume)
    if start_epoch >= cfg.epoch_size:
        print(f"nothing to do: the checkpoint already has {start_epoch} epochs and epoch_size is {cfg.epoch_size}",
              flush=True)
        return None

    loss = CrossEntropySmooth(num_classes=cfg.num_classes, smooth_factor=cfg.label_smooth_factor)
    lr = get_lr(cfg.lr_init, cfg.lr_end, cfg.lr_max, cfg.warmup_epochs, cfg.epoch_size, steps_per_epoch,
                cfg.lr_decay_mode)
    opt = build_optimizer(net, cfg, lr)
    if opt_state:
        restore_optimizer(opt, opt_state)
    model = Model(net, loss_fn=loss, optimizer=opt, amp_level=cfg.amp_level,
                  loss_scale_manager=FixedLossScaleManager(cfg.loss_scale, drop_overflow_update=False),
                  metrics=eval_metrics())

    run_log = RunLog(directory, enabled=True)
    # Saved in every checkpoint: the variant, and the options its weights need (eval.py and
    # export.py adopt pool_pad / input_format from the file).
    ckpt_extra = {"model_size": cfg.model_size, "group": cfg.group, "num_classes": cfg.num_classes,
                  **{key: cfg[key] for key in NETWORK_OPTION_KEYS}}
    monitor = None
    callbacks = [TrainMonitor(run_log, lr, steps_per_epoch, cfg.batch_size, cfg.epoch_size, cfg.log_interval,
                              rank=rank if group_size > 1 else None)]
    if eval_ds is not None and cfg.eval_interval > 0 and rank == 0:
        best_name = "shufflenetv1_transfer_best.ckpt" if cfg.dataset_path and not cfg.train_dataset_path \
            else "shufflenetv1_best.ckpt"
        best_path = os.path.join(directory, best_name)
        if start_epoch and best < 0 and os.path.isfile(best_path):
            best = best_of(best_path)  # resumed from a checkpoint that does not record the best so far
        monitor = ValAccMonitor(model, eval_ds, run_log, cfg.eval_interval, cfg.epoch_size, best_path,
                                best_so_far=best, extra=ckpt_extra)
        callbacks.append(monitor)
    callbacks.append(RunLogWriter(run_log))
    saver = None
    if cfg.save_checkpoint:
        check_free_space(directory, net, cfg.keep_checkpoint_max)
        saver = CheckpointSaver(directory, steps_per_epoch, cfg.save_checkpoint_epochs, cfg.keep_checkpoint_max,
                                cfg.epoch_size, extra=ckpt_extra,
                                extra_fn=(lambda: {"best_val_top1": monitor.best}) if monitor else None)
        callbacks.append(saver)
    stopper = StopOnSignal(saver, steps_per_epoch)
    callbacks.append(stopper)

    print(f"training ShuffleNetV1 {cfg.model_size} g{cfg.group} on {cfg.device_target}: {steps_per_epoch} steps "
          f"of {cfg.batch_size} images per epoch x {group_size} device(s), epochs {start_epoch + 1}-{cfg.epoch_size}, "
          f"output {directory}", flush=True)
    stopper.install()
    try:
        model.train(cfg.epoch_size, train_ds, callbacks=callbacks, dataset_sink_mode=cfg.device_target != "CPU",
                    initial_epoch=start_epoch)
    except TrainingStopped as stop:
        saved = f"saved {stop.saved_path}" if stop.saved_path else "no checkpoint saved (save_checkpoint is off)"
        raise TrainingInterrupted(f"stopped by {stop.signal_name}: {saved}. To continue, run the same command "
                                  f"with --resume auto --save_ckpt_path {cfg.save_ckpt_path}") from None
    finally:
        stopper.uninstall()
    last = saver.last_saved if saver else None
    print(f"training done. checkpoints: {directory}" + (f" (last: {os.path.basename(last)})" if last else "")
          + f"; log: {run_log.path}; curves: {run_log.curves_path}", flush=True)
    return last


def main(argv=None):
    cfg = get_config(argv)
    try:
        code, _ = run_reporting_errors(moxing_wrapper(cfg)(run_train), cfg)
    except TrainingInterrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
