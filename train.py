"""Train ShuffleNetV1: python train.py [--config_path YAML] [--key value ...]   (--help lists the keys)

Steps: config -> context -> run folder and resume point -> data -> network + state -> loss, LR,
optimizer, Model -> callbacks -> train.
"""
import os
import shutil
import sys
import time

import mindspore as ms
import mindspore.dataset as ds
from mindspore.train import Model
from mindspore.train.loss_scale_manager import FixedLossScaleManager

from src.callbacks import (CheckpointSaver, ResumeAt, RunLog, RunLogWriter, StopOnSignal, TrainingStopped,
                           TrainMonitor, ValAccMonitor, sink_plan)
from src.checkpoint_utils import (adopt_checkpoint_config, best_checkpoint_name, checkpoint_record, prepare_run_dir,
                                  read_best_top1, resolve_resume, restore_training_state)
from src.crossentropysmooth import CrossEntropySmooth
from src.dataset import create_train_eval_datasets
from src.lr_generator import get_lr
from src.metrics import eval_metrics
from src.model_factory import create_network
from src.model_utils.config import get_config, save_config
from src.model_utils.device_adapter import init_context, resolve_amp_level
from src.model_utils.errors import EXIT_INTERRUPTED, run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper
from src.optimizer import build_optimizer, restore_optimizer


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving its state."""


def check_free_space(directory, net, keep_max):
    """Fail before training when the disk cannot hold the checkpoints the run will keep."""
    weights = sum(p.size for p in net.get_parameters()) * 4
    # weights + momentum (about 2x the weights) per file; keep_max files, a recovery point and one being written
    needed = weights * 2 * (keep_max + 2) + (16 << 20)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ValueError(f"not enough disk space in {directory}: {free / 2**20:.0f} MiB free, the run needs about "
                         f"{needed / 2**20:.0f} MiB for {keep_max} checkpoints; free some space, lower "
                         "--keep_checkpoint_max or choose another --save_ckpt_path")


def run_train(cfg):
    """Train as configured; returns the path of the last checkpoint (or None)."""
    # 1. Context (mixed precision resolved for the device) and the run folder.
    amp_level = resolve_amp_level(cfg)
    rank, group_size = init_context(cfg)
    ms.set_seed(cfg.seed)
    directory = prepare_run_dir(cfg, rank, group_size)
    resume = resolve_resume(cfg, directory, group_size)
    params = adopt_checkpoint_config(cfg, resume, "train") if resume else None  # before data, network, config.yaml
    config_name = "config.yaml" if not os.path.exists(os.path.join(directory, "config.yaml")) \
        else f"config-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    save_config(cfg, directory, config_name)

    # 2. Data.
    train_ds, eval_ds = create_train_eval_datasets(cfg, rank, group_size)
    steps_per_epoch = train_ds.get_dataset_size()
    if steps_per_epoch == 0:
        raise ValueError(f"the training data has fewer images than one batch ({cfg.batch_size} per device); "
                         "lower --batch_size or add images")

    # 3. Network and the state it continues from.
    net = create_network(cfg)
    state = restore_training_state(net, resume, steps_per_epoch, params)
    total_steps = cfg.epoch_size * steps_per_epoch
    if state.start_step >= total_steps:
        print(f"nothing to do: the checkpoint is at step {state.start_step} and epoch_size {cfg.epoch_size} ends at "
              f"step {total_steps}", flush=True)
        return None
    if state.start_step:
        # The data pipeline starts at the resume step: in the order of an uninterrupted run, and (replaying
        # the decoding and augmentation of the skipped steps, no training) with its augmentation too.
        ds.config.set_fast_recovery(not cfg.exact_data_resume)
        train_ds.set_init_step(state.start_step)
        skipped = state.start_step * cfg.batch_size
        print(f"data: replaying the pipeline over the {skipped} images before the resume step (no training), so that "
              "the remaining steps see the data of an uninterrupted run" if cfg.exact_data_resume else
              f"data: skipping the {skipped} images before the resume step at once: the same order as an "
              "uninterrupted run, other augmentation (--exact_data_resume True replays them)", flush=True)

    # 4. Loss, learning rate, optimizer, Model.
    loss = CrossEntropySmooth(num_classes=cfg.num_classes, smooth_factor=cfg.label_smooth_factor)
    lr = get_lr(cfg.lr_init, cfg.lr_end, cfg.lr_max, cfg.warmup_epochs, cfg.epoch_size, steps_per_epoch,
                cfg.lr_decay_mode)
    opt = build_optimizer(net, cfg, lr)
    if state.optimizer_state:
        restore_optimizer(opt, state.optimizer_state)
    model = Model(net, loss_fn=loss, optimizer=opt, amp_level=amp_level,
                  loss_scale_manager=FixedLossScaleManager(cfg.loss_scale, drop_overflow_update=False),
                  metrics=eval_metrics())

    # 5. Callbacks: progress, validation + best checkpoint, log, checkpoints, stop on a signal.
    run_log = RunLog(directory)
    record = checkpoint_record(cfg)  # every checkpoint says what network it holds
    monitor = TrainMonitor(run_log, lr, steps_per_epoch, cfg.batch_size, cfg.epoch_size, cfg.log_interval,
                           rank=rank if group_size > 1 else None, state=state.monitor_state)
    callbacks = [ResumeAt(state.start_step), monitor]
    val_monitor = None
    if eval_ds is not None and cfg.eval_interval > 0 and rank == 0:
        best_path = os.path.join(directory, best_checkpoint_name(cfg.is_transfer))
        best = state.best_top1
        if state.start_step and best < 0 and os.path.isfile(best_path):
            best = read_best_top1(best_path)  # resumed from a checkpoint that does not record the best so far
        val_monitor = ValAccMonitor(model, eval_ds, run_log, steps_per_epoch, cfg.eval_interval, cfg.epoch_size,
                                    best_path, best_so_far=best, extra=record)
        callbacks.append(val_monitor)
    callbacks.append(RunLogWriter(run_log, steps_per_epoch))
    saver = None
    if cfg.save_checkpoint:
        check_free_space(directory, net, cfg.keep_checkpoint_max)

        def resume_state():  # (the best as text: a float entry would be stored as float32)
            return {**monitor.state(), **({"best_val_top1": repr(val_monitor.best)} if val_monitor else {})}
        saver = CheckpointSaver(directory, steps_per_epoch, cfg.save_checkpoint_epochs, cfg.keep_checkpoint_max,
                                cfg.epoch_size, extra=record, extra_fn=resume_state,
                                every_steps=cfg.save_checkpoint_steps)
        callbacks.append(saver)
    stopper = StopOnSignal(saver)
    callbacks.append(stopper)

    # 6. Train (on GPU/Ascend in sink mode: MindSpore's epochs are sinks, see src/callbacks.sink_plan).
    epochs, sink_size, initial, sink = sink_plan(steps_per_epoch, cfg.epoch_size, state.start_step,
                                                 cfg.log_interval, sink=cfg.device_target != "CPU")
    first = state.start_step // steps_per_epoch + 1
    print(f"training ShuffleNetV1 {cfg.model_size} g{cfg.group} on {cfg.device_target} (amp_level {amp_level}): "
          f"{steps_per_epoch} steps of {cfg.batch_size} images per epoch x {group_size} device(s), epochs "
          f"{first}-{cfg.epoch_size}, output {directory}", flush=True)
    stopper.install()
    try:
        model.train(epochs, train_ds, callbacks=callbacks, dataset_sink_mode=sink, sink_size=sink_size,
                    initial_epoch=initial)
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
    cfg = get_config(argv, purpose="train", prog="train.py")
    try:
        code, _ = run_reporting_errors(moxing_wrapper(cfg, "train")(run_train), cfg)
    except TrainingInterrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
