"""Training callbacks: progress, checkpoints, validation accuracy, the run log, stopping on signals.

Order them as ``[TrainMonitor, ValAccMonitor, RunLogWriter, CheckpointSaver]``: the
first two fill the epoch's record in a shared :class:`RunLog`, the writer appends it to
``train_log.jsonl`` and redraws ``curves.png``, and only then is the epoch's checkpoint
written (a process killed in between repeats the epoch and logs it again, rather than
skipping its record).
"""
import glob
import json
import os
import re
import signal
import time

import mindspore as ms
import numpy as np
from mindspore.train.callback import Callback

from .plot import plot_curves

__all__ = ["RunLog", "TrainMonitor", "ValAccMonitor", "CheckpointSaver", "RunLogWriter", "StopOnSignal", "TrainingStopped",
           "CKPT_PREFIX", "checkpoint_name", "list_checkpoints", "save_checkpoint_atomic", "verify_checkpoint",
           "remove_unfinished_writes"]

CKPT_PREFIX = "shufflenetv1"
_CKPT_RE = re.compile(rf"^{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$")


def checkpoint_name(epoch, step):
    """File name of the checkpoint after ``epoch`` (the original's ``shufflenetv1-<epoch>_<step>.ckpt``)."""
    return f"{CKPT_PREFIX}-{epoch}_{step}.ckpt"


def list_checkpoints(directory):
    """Training checkpoints in ``directory``, oldest first, as (epoch, step, path)."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), f"{CKPT_PREFIX}-*_*.ckpt")):
        match = _CKPT_RE.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


# Names of unfinished writes: ours (<name>.tmp-<pid>.ckpt) and MindSpore's own temporary file
# inside save_checkpoint (the same name ending in .tmp).
_TEMP_NAME = re.compile(r"^.+\.ckpt\.tmp-(\d+)\.(?:ckpt|tmp)$")


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
    tmp = f"{path}.tmp-{os.getpid()}.ckpt"  # save_checkpoint appends .ckpt to any other name
    try:
        ms.save_checkpoint(cell_or_list, tmp, append_dict=append_dict, crc_check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def verify_checkpoint(path):
    """None when ``path`` reads back whole (CRC checked), else the reason it does not."""
    try:
        ms.load_checkpoint(path, crc_check=True)
    except Exception as exc:  # pylint: disable=broad-except  (MindSpore raises several types)
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


def _loss_value(outputs):
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy())) if hasattr(outputs, "asnumpy") else float(outputs)


class RunLog:
    """The per-epoch records of a run (``train_log.jsonl``) and its curves (``curves.png``).

    Records are appended, never rewritten, so a resumed run continues the same log.
    """

    def __init__(self, directory, enabled=True):
        self.directory = directory
        self.enabled = enabled
        self.path = os.path.join(directory, "train_log.jsonl")
        self.curves_path = os.path.join(directory, "curves.png")
        self.pending = {}

    def records(self):
        if not os.path.isfile(self.path):
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut short by a killed process
        return out

    def flush(self):
        if not self.pending:
            return
        record, self.pending = self.pending, {}
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        records = self.records()
        # Keep the latest record of each epoch (a resumed run may repeat epochs after a crash).
        by_epoch = {r["epoch"]: r for r in records if "epoch" in r}
        plot_curves([by_epoch[e] for e in sorted(by_epoch)], self.curves_path)


class TrainMonitor(Callback):
    """Prints loss, learning rate, img/s, epoch time and ETA; fills the epoch's record.

    Args:
        run_log (RunLog): where the epoch's numbers go.
        lr (np.ndarray): the learning rate of every step of the whole schedule.
        steps_per_epoch (int): steps of one epoch.
        batch_size (int): images per step on this device.
        total_epochs (int): epochs of the whole run (for the ETA).
        log_interval (int): print every N steps too (0: once per epoch).
        rank (int): printed in the lines of a distributed run.
    """

    def __init__(self, run_log, lr, steps_per_epoch, batch_size, total_epochs, log_interval=0, rank=None):
        super().__init__()
        self.run_log = run_log
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.total_epochs = total_epochs
        self.log_interval = log_interval
        self.tag = f"[rank {rank}] " if rank is not None else ""
        self.losses = []
        self.epoch_start = self.step_start = 0.0
        self.run_start = None
        self.epochs_done_here = 0

    def _lr_at(self, epoch, step_in_epoch):
        index = min((epoch - 1) * self.steps_per_epoch + step_in_epoch - 1, len(self.lr) - 1)
        return float(self.lr[max(index, 0)])

    def on_train_epoch_begin(self, run_context):
        now = time.time()
        if self.run_start is None:
            self.run_start = now
        self.epoch_start = self.step_start = now
        self.losses = []

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        loss = _loss_value(cb.net_outputs)
        if not np.isfinite(loss):
            print(f"{self.tag}warning: loss is {loss} at epoch {cb.cur_epoch_num}; lower lr_max or "
                  "check the data", flush=True)
        self.losses.append(loss)
        step = len(self.losses)
        if self.log_interval and step % self.log_interval == 0 and step < self.steps_per_epoch:
            now = time.time()
            speed = self.log_interval * self.batch_size / max(now - self.step_start, 1e-9)
            self.step_start = now
            print(f"{self.tag}epoch {cb.cur_epoch_num}/{self.total_epochs} step {step}/{self.steps_per_epoch}: "
                  f"loss {loss:.4f}, lr {self._lr_at(cb.cur_epoch_num, step):.6f}, {speed:.1f} img/s", flush=True)

    def on_train_epoch_end(self, run_context):
        cb = run_context.original_args()
        epoch = cb.cur_epoch_num
        elapsed = time.time() - self.epoch_start
        steps = max(len(self.losses), 1)
        avg_loss = float(np.mean(self.losses)) if self.losses else float("nan")
        speed = steps * self.batch_size / max(elapsed, 1e-9)
        self.epochs_done_here += 1
        per_epoch = (time.time() - self.run_start) / self.epochs_done_here
        eta = per_epoch * (self.total_epochs - epoch)
        lr_first, lr_last = self._lr_at(epoch, 1), self._lr_at(epoch, steps)
        print(f"{self.tag}epoch {epoch}/{self.total_epochs}: loss {avg_loss:.4f}, lr {lr_last:.6f}, "
              f"{speed:.1f} img/s, epoch time {elapsed:.1f} s, ETA {_fmt_duration(eta)}", flush=True)
        # The original model zoo's line, kept for scripts that parse it.
        print(f"{self.tag}epoch time: {elapsed * 1000:.3f} ms, per step time: {elapsed * 1000 / steps:.3f} ms, "
              f"avg loss: {avg_loss:.5f}", flush=True)
        optimizer = getattr(cb, "optimizer", None)
        opt_step = int(optimizer.global_step.asnumpy()) if optimizer is not None else None
        self.run_log.pending.update(epoch=epoch, loss=avg_loss, lr_first=lr_first, lr_last=lr_last,
                                    global_step=epoch * self.steps_per_epoch, optimizer_step=opt_step,
                                    img_per_s=round(speed, 2),
                                    epoch_time_s=round(elapsed, 3), time=time.strftime("%Y-%m-%d %H:%M:%S"))


def _fmt_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ValAccMonitor(Callback):
    """Evaluates every ``interval`` epochs, logs top-1 (as a fraction) and the best so far,
    and saves the network with the best validation top-1 to ``best_ckpt_path``.

    Args:
        model (mindspore.train.Model): the training Model (its eval network is used).
        eval_dataset: the validation dataset.
        run_log (RunLog): where the accuracies go.
        interval (int): evaluate every N epochs (and after the last epoch).
        total_epochs (int): epochs of the whole run.
        best_ckpt_path (str): where the best network is saved; None: not saved.
        best_so_far (float): best top-1 of an earlier, resumed part of the run.
        extra (dict): string/number entries saved in the best checkpoint (e.g. the variant).
    """

    def __init__(self, model, eval_dataset, run_log, interval=1, total_epochs=1, best_ckpt_path=None,
                 best_so_far=-1.0, extra=None):
        super().__init__()
        self.model = model
        self.eval_dataset = eval_dataset
        self.run_log = run_log
        self.interval = max(1, interval)
        self.total_epochs = total_epochs
        self.best_ckpt_path = best_ckpt_path
        self.best = best_so_far
        self.extra = dict(extra or {})

    def on_train_epoch_end(self, run_context):
        cb = run_context.original_args()
        epoch = cb.cur_epoch_num
        if epoch % self.interval and epoch != self.total_epochs:
            return
        result = self.model.eval(self.eval_dataset, dataset_sink_mode=False)
        top1, top5 = float(result["Top_1_Acc"]), float(result["Top_5_Acc"])
        # (a best read back from a checkpoint is float32: a tie must not count as better)
        improved = top1 > self.best + 1e-6
        if improved:
            self.best = top1
            if self.best_ckpt_path:
                save_checkpoint_atomic(cb.train_network.network if hasattr(cb.train_network, "network")
                                       else cb.train_network, self.best_ckpt_path,
                                       append_dict={"epoch_num": epoch, "val_top1": top1, **self.extra})
        print(f"epoch {epoch}: val Top_1_Acc {top1:.4f}, best {self.best:.4f}"
              + (f" (saved {self.best_ckpt_path})" if improved and self.best_ckpt_path else ""), flush=True)
        self.run_log.pending.update(val_top1=top1, val_top5=top5, val_loss=float(result.get("Loss", float("nan"))),
                                    best_val_top1=self.best)


class CheckpointSaver(Callback):
    """Saves ``shufflenetv1-<epoch>_<step>.ckpt`` every ``interval`` epochs (and after the last),
    atomically, with the optimizer state, keeping at most ``keep_max`` of them.

    Args:
        directory (str): checkpoint folder.
        steps_per_epoch (int): the <step> of the file name.
        interval (int): save every N epochs.
        keep_max (int): checkpoints kept; the oldest are removed first.
        total_epochs (int): epochs of the whole run.
        extra (dict): string/number entries saved in every checkpoint (e.g. the variant).
        extra_fn (callable): returns more such entries at each save (e.g. the best validation
            top-1 so far, which a resumed run needs so as not to overwrite a better best checkpoint).
    """

    def __init__(self, directory, steps_per_epoch, interval=1, keep_max=5, total_epochs=1, extra=None,
                 extra_fn=None):
        super().__init__()
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.interval = max(1, interval)
        self.keep_max = max(1, keep_max)
        self.total_epochs = total_epochs
        self.extra = dict(extra or {})
        self.extra_fn = extra_fn
        self.last_saved = None

    def save(self, train_network, epoch, step=None):
        step = self.steps_per_epoch if step is None else step
        path = os.path.join(self.directory, checkpoint_name(epoch, step))
        save_checkpoint_atomic(train_network, path,
                               append_dict={"epoch_num": epoch, "step_num": step,
                                            "steps_per_epoch": self.steps_per_epoch, **self.extra,
                                            **(self.extra_fn() if self.extra_fn else {})})
        self.last_saved = path
        self._rotate()
        return path

    def _rotate(self):
        existing = list_checkpoints(self.directory)
        for _, _, path in existing[:max(0, len(existing) - self.keep_max)]:
            os.remove(path)

    def on_train_epoch_end(self, run_context):
        cb = run_context.original_args()
        epoch = cb.cur_epoch_num
        if epoch % self.interval == 0 or epoch == self.total_epochs:
            self.save(cb.train_network, epoch)


class TrainingStopped(Exception):
    """Raised out of ``Model.train`` by :class:`StopOnSignal` once the state is saved."""

    def __init__(self, signal_name, saved_path):
        super().__init__(signal_name, saved_path)
        self.signal_name = signal_name
        self.saved_path = saved_path


class StopOnSignal(Callback):
    """On SIGINT or SIGTERM, finish the current step, save a checkpoint of that state
    (``shufflenetv1-<epoch>_<step>.ckpt``) and stop training; a second signal stops at once.

    Args:
        saver (CheckpointSaver): writes the checkpoint (None: stop without saving).
        steps_per_epoch (int): to tell a mid-epoch stop from an epoch end.
    """

    def __init__(self, saver, steps_per_epoch):
        super().__init__()
        self.saver = saver
        self.steps_per_epoch = steps_per_epoch
        self.received = None
        self.saved_path = None
        self._previous = {}
        self._step_in_epoch = 0

    def install(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # second signal: give up on the clean stop
            self.uninstall()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        # MindSpore's runtime catches Ctrl-C (SIGINT) during training and sends the process SIGTERM.
        note = " (Ctrl-C or kill)" if signum == signal.SIGTERM else ""
        print(f"\n{self.received} received{note}: saving a checkpoint after the current step, then stopping "
              "(send it again to stop at once)", flush=True)

    def on_train_epoch_begin(self, run_context):
        self._step_in_epoch = 0

    def on_train_step_end(self, run_context):
        self._step_in_epoch += 1
        if self.received is None:
            return
        cb = run_context.original_args()
        if self.saver is not None:
            self.saved_path = self.saver.save(cb.train_network, cb.cur_epoch_num, self._step_in_epoch)
        # request_stop() only takes effect at the end of the epoch in MindSpore 2.10; leave now.
        raise TrainingStopped(self.received, self.saved_path)


class RunLogWriter(Callback):
    """Writes the epoch's record (filled by the monitors) and redraws the curves."""

    def __init__(self, run_log):
        super().__init__()
        self.run_log = run_log

    def on_train_epoch_end(self, run_context):
        self.run_log.flush()
