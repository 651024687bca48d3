"""Training callbacks: progress, checkpoints, validation accuracy, the run log, stopping on signals.

Every callback here follows ``cb_params.cur_step_num``, the global step, never the number
of calls: on GPU/Ascend with ``dataset_sink_mode=True`` MindSpore calls ``step_end`` once
per sink and advances ``cur_step_num`` by the sink size, and a MindSpore "epoch" is one
sink (of ``sink_size`` steps, see :func:`sink_plan`); on CPU it calls ``step_end`` every
step. An epoch of the data ends when ``cur_step_num`` reaches a multiple of
``steps_per_epoch``. :class:`ResumeAt` (first in the list) starts ``cur_step_num`` at the
step a resumed run continues from (MindSpore starts it at 0).

Order them as ``[ResumeAt, TrainMonitor, ValAccMonitor, RunLogWriter, CheckpointSaver,
StopOnSignal]``: the monitors fill the epoch's record in a shared :class:`RunLog`, the
writer appends it to ``train_log.jsonl`` and redraws ``curves.png``, and only then is the
epoch's checkpoint written (a process killed in between repeats the epoch and logs it
again, rather than skipping its record); a signal stops after all of them.
"""
import json
import math
import os
import signal
import time

import numpy as np
from mindspore.train.callback import Callback

from .checkpoint_utils import checkpoint_name, list_checkpoints, save_checkpoint_atomic
from .plot import plot_curves

__all__ = ["StepClock", "sink_plan", "ResumeAt", "RunLog", "TrainMonitor", "ValAccMonitor", "CheckpointSaver",
           "RunLogWriter", "StopOnSignal", "TrainingStopped"]


class StepClock:
    """Epoch and step-in-epoch of a global step (1-based), for ``steps_per_epoch`` steps per epoch."""

    def __init__(self, steps_per_epoch):
        self.steps_per_epoch = steps_per_epoch

    def epoch_of(self, step):
        return (step - 1) // self.steps_per_epoch + 1

    def step_in_epoch(self, step):
        return step - (self.epoch_of(step) - 1) * self.steps_per_epoch

    def epoch_ends(self, step):
        return step % self.steps_per_epoch == 0


def sink_plan(steps_per_epoch, epoch_size, start_step, log_interval=0, sink=True):
    """How ``Model.train`` is called: (its epoch count, sink_size, initial_epoch, dataset_sink_mode).

    Without sink mode (CPU) a MindSpore epoch is an epoch of the data. In sink mode one
    sink is ``steps_per_epoch`` steps, or ``log_interval`` steps when that divides an epoch
    (so that progress is printed that often); a MindSpore epoch is one sink. ``start_step``
    (a resumed run) must fall on a sink boundary; the data pipeline starts there.
    """
    if not sink:
        return epoch_size, -1, start_step // steps_per_epoch, False
    size = steps_per_epoch
    if log_interval and steps_per_epoch % log_interval == 0:
        size = log_interval
    if start_step % size:
        size = math.gcd(size, start_step)
    total = epoch_size * steps_per_epoch
    return total // size, size, start_step // size, True


class ResumeAt(Callback):
    """Starts ``cur_step_num`` at ``start_step`` (the global step a resumed run continues after)."""

    def __init__(self, start_step):
        super().__init__()
        self.start_step = start_step

    def on_train_begin(self, run_context):
        run_context.original_args().cur_step_num = self.start_step


def _loss_value(outputs):
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy())) if hasattr(outputs, "asnumpy") else float(outputs)


class RunLog:
    """The records of a run: one per epoch in ``train_log.jsonl`` (and ``curves.png``), one per
    logged step in ``train_steps.jsonl``.

    Records are appended, never rewritten, so a resumed run continues the same log.
    """

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, "train_log.jsonl")
        self.steps_path = os.path.join(directory, "train_steps.jsonl")
        self.curves_path = os.path.join(directory, "curves.png")
        self.pending = {}

    @staticmethod
    def read(path):
        """The records of a JSON-lines file (a line cut short by a killed process is skipped)."""
        if not os.path.isfile(path):
            return []
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return out

    def records(self):
        return self.read(self.path)

    def add_step(self, record):
        with open(self.steps_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def flush(self):
        if not self.pending:
            return
        record, self.pending = self.pending, {}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        # Keep the latest record of each epoch (a resumed run may repeat epochs after a crash).
        by_epoch = {r["epoch"]: r for r in self.records() if "epoch" in r}
        plot_curves([by_epoch[e] for e in sorted(by_epoch)], self.curves_path)


class TrainMonitor(Callback):
    """Prints loss, learning rate, img/s and ETA every ``log_interval`` steps and per epoch; fills the
    epoch's record (and a ``train_steps.jsonl`` line per logged step).

    In sink mode the loss of a call is that of the sink's last step; the epoch's loss is the
    mean of the losses reported. The running sum is part of the state a checkpoint keeps
    (:meth:`state`), so an epoch resumed mid-way logs the loss of all its steps.

    Args:
        run_log (RunLog): where the numbers go.
        lr (np.ndarray): the learning rate of every step of the whole schedule.
        steps_per_epoch (int): steps of one epoch.
        batch_size (int): images per step on this device.
        total_epochs (int): epochs of the whole run.
        log_interval (int): print every N steps too (0: once per epoch).
        rank (int): printed in the lines of a distributed run.
        state (dict): :meth:`state` of the run this one resumes.
    """

    def __init__(self, run_log, lr, steps_per_epoch, batch_size, total_epochs, log_interval=0, rank=None,
                 state=None):
        super().__init__()
        self.run_log = run_log
        self.lr = lr
        self.clock = StepClock(steps_per_epoch)
        self.batch_size = batch_size
        self.total_epochs = total_epochs
        self.log_interval = log_interval
        self.tag = f"[rank {rank}] " if rank is not None else ""
        state = json.loads(state) if isinstance(state, str) else (state or {})
        self.loss_sum = float(state.get("epoch_loss_sum", 0.0))
        self.loss_count = int(state.get("epoch_loss_count", 0))
        self.last_step = self.run_start_step = self.epoch_first_step = 0
        self.epoch_time = self.run_start = 0.0
        self.last_log = (0, 0.0)

    def state(self):
        """The running loss of the current epoch, as a checkpoint records it (JSON text: a checkpoint
        stores a float entry as float32, which would change the epoch's logged loss)."""
        return {"train_monitor": json.dumps({"epoch_loss_sum": self.loss_sum, "epoch_loss_count": self.loss_count})}

    def _lr_at(self, step):
        return float(self.lr[min(max(step - 1, 0), len(self.lr) - 1)])

    def on_train_begin(self, run_context):
        step = run_context.original_args().cur_step_num
        now = time.time()
        self.last_step = self.run_start_step = self.epoch_first_step = step
        self.epoch_time = self.run_start = now
        self.last_log = (step, now)

    def on_train_step_begin(self, run_context):
        if self.clock.epoch_ends(self.last_step):
            # The epoch's time and speed leave out what ran after its last step (validation, checkpoint).
            now = time.time()
            self.epoch_time, self.last_log = now, (self.last_step, now)

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        step = cb.cur_step_num
        if step == self.last_step:
            return
        now = time.time()
        loss = _loss_value(cb.net_outputs)
        epoch = self.clock.epoch_of(step)
        if not np.isfinite(loss):
            print(f"{self.tag}warning: loss is {loss} at epoch {epoch}; lower lr_max or check the data", flush=True)
        self.loss_sum += loss
        self.loss_count += 1
        in_epoch = self.clock.step_in_epoch(step)
        crossed = self.log_interval and step // self.log_interval > self.last_step // self.log_interval
        self.last_step = step
        if crossed:
            done, since = step - self.last_log[0], max(now - self.last_log[1], 1e-9)
            self.last_log = (step, now)
            self.run_log.add_step({"global_step": step, "epoch": epoch, "step": in_epoch, "loss": loss,
                                   "lr": self._lr_at(step)})
            if not self.clock.epoch_ends(step):
                print(f"{self.tag}epoch {epoch}/{self.total_epochs} step {in_epoch}/{self.clock.steps_per_epoch}: "
                      f"loss {loss:.4f}, lr {self._lr_at(step):.6f}, {done * self.batch_size / since:.1f} img/s",
                      flush=True)
        if self.clock.epoch_ends(step):
            self._end_epoch(cb, epoch, step, now)

    def _end_epoch(self, cb, epoch, step, now):
        elapsed = now - self.epoch_time
        steps = step - self.epoch_first_step
        avg_loss = self.loss_sum / self.loss_count if self.loss_count else float("nan")
        speed = steps * self.batch_size / max(elapsed, 1e-9)
        per_step = (now - self.run_start) / max(step - self.run_start_step, 1)
        eta = per_step * (self.total_epochs * self.clock.steps_per_epoch - step)
        lr_first, lr_last = self._lr_at(step - self.clock.steps_per_epoch + 1), self._lr_at(step)
        print(f"{self.tag}epoch {epoch}/{self.total_epochs}: loss {avg_loss:.4f}, lr {lr_last:.6f}, "
              f"{speed:.1f} img/s, epoch time {elapsed:.1f} s, ETA {_fmt_duration(eta)}", flush=True)
        # The original model zoo's line, kept for scripts that parse it.
        print(f"{self.tag}epoch time: {elapsed * 1000:.3f} ms, per step time: {elapsed * 1000 / max(steps, 1):.3f} ms, "
              f"avg loss: {avg_loss:.5f}", flush=True)
        optimizer = getattr(cb, "optimizer", None)
        opt_step = int(optimizer.global_step.asnumpy()) if optimizer is not None else None
        self.run_log.pending.update(epoch=epoch, loss=avg_loss, lr_first=lr_first, lr_last=lr_last,
                                    global_step=step, optimizer_step=opt_step, img_per_s=round(speed, 2),
                                    epoch_time_s=round(elapsed, 3), time=time.strftime("%Y-%m-%d %H:%M:%S"))
        self.loss_sum, self.loss_count = 0.0, 0
        self.epoch_time, self.epoch_first_step = now, step


def _fmt_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ValAccMonitor(Callback):
    """Evaluates every ``interval`` epochs (and after the last), logs top-1 (as a fraction) and the best
    so far, and saves the network with the best validation top-1 to ``best_ckpt_path``.

    Args:
        model (mindspore.train.Model): the training Model (its eval network is used).
        eval_dataset: the validation dataset.
        run_log (RunLog): where the accuracies go.
        steps_per_epoch (int): steps of one epoch.
        interval (int): evaluate every N epochs (and after the last epoch).
        total_epochs (int): epochs of the whole run.
        best_ckpt_path (str): where the best network is saved; None: not saved.
        best_so_far (float): best top-1 of an earlier, resumed part of the run.
        extra (dict): string/number entries saved in the best checkpoint (e.g. the variant).
    """

    def __init__(self, model, eval_dataset, run_log, steps_per_epoch, interval=1, total_epochs=1,
                 best_ckpt_path=None, best_so_far=-1.0, extra=None):
        super().__init__()
        self.model = model
        self.eval_dataset = eval_dataset
        self.run_log = run_log
        self.clock = StepClock(steps_per_epoch)
        self.interval = max(1, interval)
        self.total_epochs = total_epochs
        self.best_ckpt_path = best_ckpt_path
        self.best = best_so_far
        self.extra = dict(extra or {})

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        if not self.clock.epoch_ends(cb.cur_step_num):
            return
        epoch = self.clock.epoch_of(cb.cur_step_num)
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
    """Saves ``shufflenetv1-<epoch>_<step>.ckpt`` atomically, with the optimizer state and what a
    resumed run needs: every ``interval`` epochs (and after the last), and every ``every_steps``
    steps within an epoch (a recovery point; in sink mode at the first sink end past the step).

    Epoch checkpoints rotate: at most ``keep_max`` are kept, the oldest removed first. A mid-epoch
    one is kept while it is one of the two newest checkpoints (so that data-parallel ranks killed
    one save apart still share one to resume from), then removed.

    Args:
        directory (str): checkpoint folder.
        steps_per_epoch (int): steps of one epoch.
        interval (int): save every N epochs.
        keep_max (int): epoch checkpoints kept.
        total_epochs (int): epochs of the whole run.
        extra (dict): string/number entries saved in every checkpoint (e.g. the variant).
        extra_fn (callable): returns more such entries at each save (the best validation top-1
            so far, the monitor's running loss).
        every_steps (int): also save every N steps within an epoch; 0 = only at epoch ends.
    """

    def __init__(self, directory, steps_per_epoch, interval=1, keep_max=5, total_epochs=1, extra=None,
                 extra_fn=None, every_steps=0):
        super().__init__()
        self.directory = directory
        self.clock = StepClock(steps_per_epoch)
        self.interval = max(1, interval)
        self.keep_max = max(1, keep_max)
        self.total_epochs = total_epochs
        self.extra = dict(extra or {})
        self.extra_fn = extra_fn
        self.every_steps = every_steps
        self.last_saved = None
        self.last_saved_step = None
        self.last_step = None

    def save(self, train_network, step):
        """Write the checkpoint of global ``step`` (if not written already); returns its path."""
        if step == self.last_saved_step:
            return self.last_saved
        epoch, in_epoch = self.clock.epoch_of(step), self.clock.step_in_epoch(step)
        path = os.path.join(self.directory, checkpoint_name(epoch, in_epoch))
        save_checkpoint_atomic(train_network, path,
                               append_dict={"epoch_num": epoch, "step_num": in_epoch, "global_step_num": step,
                                            "steps_per_epoch": self.clock.steps_per_epoch, **self.extra,
                                            **(self.extra_fn() if self.extra_fn else {})})
        self.last_saved, self.last_saved_step = path, step
        self._rotate(path)
        return path

    def _rotate(self, newest):
        per_epoch = self.clock.steps_per_epoch
        found = list_checkpoints(self.directory)
        whole = [path for _, step, path in found if step == per_epoch]
        recent = {path for *_, path in found[-2:]} | {newest}
        partial = [path for _, step, path in found if step != per_epoch and path not in recent]
        for path in whole[:max(0, len(whole) - self.keep_max)] + partial:
            if path != newest:
                os.remove(path)

    def on_train_begin(self, run_context):
        self.last_step = run_context.original_args().cur_step_num

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        step, previous = cb.cur_step_num, self.last_step
        self.last_step = step
        if self.clock.epoch_ends(step):
            epoch = self.clock.epoch_of(step)
            if epoch % self.interval == 0 or epoch == self.total_epochs:
                self.save(cb.train_network, step)
        elif self.every_steps and previous is not None and step // self.every_steps > previous // self.every_steps:
            self.save(cb.train_network, step)


class TrainingStopped(Exception):
    """Raised out of ``Model.train`` by :class:`StopOnSignal` once the state is saved."""

    def __init__(self, signal_name, saved_path):
        super().__init__(signal_name, saved_path)
        self.signal_name = signal_name
        self.saved_path = saved_path


class StopOnSignal(Callback):
    """On SIGINT or SIGTERM, finish the current step (the current sink on a device), save a
    checkpoint of that state and stop training; a second signal stops at once.

    At an epoch's last step the epoch's own work (record, validation, checkpoint) is done
    first (this callback comes last), so the stop is saved as ``-<epoch>_<steps_per_epoch>``
    and a resumed run starts the next epoch.

    Args:
        saver (CheckpointSaver): writes the checkpoint (None: stop without saving).
    """

    def __init__(self, saver):
        super().__init__()
        self.saver = saver
        self.received = None
        self.saved_path = None
        self._previous = {}

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

    def on_train_step_end(self, run_context):
        if self.received is None:
            return
        cb = run_context.original_args()
        if self.saver is not None:
            self.saved_path = self.saver.save(cb.train_network, cb.cur_step_num)
        # request_stop() only takes effect at the end of the epoch in MindSpore 2.10; leave now.
        raise TrainingStopped(self.received, self.saved_path)


class RunLogWriter(Callback):
    """Writes the epoch's record (filled by the monitors) at each epoch's end and redraws the curves."""

    def __init__(self, run_log, steps_per_epoch):
        super().__init__()
        self.run_log = run_log
        self.clock = StepClock(steps_per_epoch)

    def on_train_step_end(self, run_context):
        if self.clock.epoch_ends(run_context.original_args().cur_step_num):
            self.run_log.flush()
