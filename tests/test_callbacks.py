"""Training callbacks driven by cur_step_num, in both ways MindSpore calls them: every step (CPU), and
once per sink with cur_step_num jumping by the sink size (GPU/Ascend dataset sink mode, which CPU never
shows: simulated here with a run context that advances as Model.train does in sink mode)."""
import json
import os
import re
import signal
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from mindspore.train.callback import Callback

from src.callbacks import (CheckpointSaver, ResumeAt, RunLog, RunLogWriter, StopOnSignal, TrainingStopped,
                           TrainMonitor, ValAccMonitor, sink_plan)
from src.checkpoint_utils import list_checkpoints

SPE, EPOCHS, BATCH = 6, 3, 4  # steps per epoch, epochs, images per step


class Run:
    """A run context as Model.train hands it to the callbacks."""

    def __init__(self):
        self.cb = SimpleNamespace(cur_step_num=0, net_outputs=None, train_network=nn.Dense(2, 2), optimizer=None)

    def original_args(self):
        return self.cb


def drive(callbacks, sink_size, epochs=EPOCHS, stop_after=None, losses=None):
    """Call ``callbacks`` as Model.train does: sink mode when ``sink_size`` > 1 (one step_end per sink,
    cur_step_num += sink_size), step by step when 1. ``losses(step)`` is the loss reported at a call."""
    run = Run()
    losses = losses or (lambda step: 1.0 + step / 100)
    for cb in callbacks:
        cb.on_train_begin(run)
    total = epochs * SPE
    calls = 0
    while run.cb.cur_step_num < total:
        for cb in callbacks:
            cb.on_train_step_begin(run)
        run.cb.cur_step_num += sink_size
        run.cb.net_outputs = ms.Tensor(np.float32(losses(run.cb.cur_step_num)))
        calls += 1
        for cb in callbacks:
            cb.on_train_step_end(run)
        for cb in callbacks:  # a MindSpore epoch: a whole data epoch step by step, one sink in sink mode
            if sink_size > 1 or run.cb.cur_step_num % SPE == 0:
                cb.on_train_epoch_end(run)
        if stop_after is not None and calls == stop_after:
            break
    return run


def lr():
    return np.linspace(0.1, 0.6, EPOCHS * SPE).astype(np.float32)


@pytest.mark.parametrize("sink_size", [1, SPE, 3])
def test_progress_follows_the_steps_not_the_calls(tmp_path, capsys, sink_size):
    log = RunLog(str(tmp_path))
    monitor = TrainMonitor(log, lr(), SPE, BATCH, EPOCHS)
    drive([ResumeAt(0), monitor, RunLogWriter(log, SPE)], sink_size)
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ") and "/3:" in line] == \
        ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    records = log.records()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["global_step"] for r in records] == [6, 12, 18]
    assert [r["lr_first"] for r in records] == pytest.approx([lr()[0], lr()[6], lr()[12]])
    assert [r["lr_last"] for r in records] == pytest.approx([lr()[5], lr()[11], lr()[17]])
    # the epoch's loss: the mean of what was reported (every step, or the last step of each sink)
    reported = {1: [1.0 + s / 100 for s in range(sink_size, 7, sink_size)]}
    assert records[0]["loss"] == pytest.approx(np.mean(reported[1]))
    assert "per step time:" in out  # the original's line, over the epoch's 6 steps


def test_log_interval_in_sink_mode_prints_at_each_sink(tmp_path, capsys):
    epochs, sink, _, sink_mode = sink_plan(SPE, EPOCHS, 0, log_interval=3, sink=True)
    assert (epochs, sink, sink_mode) == (EPOCHS * SPE // 3, 3, True)  # a MindSpore epoch is a sink
    log = RunLog(str(tmp_path))
    drive([TrainMonitor(log, lr(), SPE, BATCH, EPOCHS, log_interval=3), RunLogWriter(log, SPE)], sink)
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"epoch \d+/\d+ step ", line)]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3 step 3/6", "epoch 2/3 step 3/6", "epoch 3/3 step 3/6"]
    steps = RunLog.read(log.steps_path)
    assert [s["global_step"] for s in steps] == [3, 6, 9, 12, 15, 18]


def test_sink_plan():
    # CPU: no sink mode, a MindSpore epoch is a data epoch; a resumed run starts in its epoch
    assert sink_plan(SPE, EPOCHS, 0, sink=False) == (EPOCHS, -1, 0, False)
    assert sink_plan(SPE, EPOCHS, 8, sink=False) == (EPOCHS, -1, 1, False)
    # devices: one sink per epoch, or per log_interval when it divides the epoch
    assert sink_plan(SPE, EPOCHS, 0, sink=True) == (EPOCHS, SPE, 0, True)
    assert sink_plan(SPE, EPOCHS, 12, sink=True) == (EPOCHS, SPE, 2, True)
    assert sink_plan(SPE, EPOCHS, 0, log_interval=2, sink=True) == (9, 2, 0, True)
    assert sink_plan(SPE, EPOCHS, 0, log_interval=4, sink=True) == (EPOCHS, SPE, 0, True)  # 4 does not divide 6
    # a resume point inside a sink: sinks small enough to start there
    assert sink_plan(SPE, EPOCHS, 9, sink=True) == (6, 3, 3, True)


@pytest.mark.parametrize("sink_size", [1, SPE])
def test_checkpoints_are_named_by_epoch_and_step_and_rotate(tmp_path, sink_size):
    saver = CheckpointSaver(str(tmp_path), SPE, interval=1, keep_max=2, total_epochs=EPOCHS,
                            extra={"model_size": "0.5x"}, every_steps=4)
    drive([ResumeAt(0), saver], sink_size)
    names = [os.path.basename(p) for *_, p in list_checkpoints(str(tmp_path))]
    # two epoch checkpoints kept; of the recovery points (steps 4, 8, 16 on CPU) the one among the two
    # newest checkpoints stays (another rank may still need it), the others went as later ones came
    if sink_size == 1:
        assert names == [f"shufflenetv1-2_{SPE}.ckpt", "shufflenetv1-3_4.ckpt", f"shufflenetv1-3_{SPE}.ckpt"]
    else:  # one sink per epoch: every save is at an epoch's end
        assert names == [f"shufflenetv1-2_{SPE}.ckpt", f"shufflenetv1-3_{SPE}.ckpt"]
    params = ms.load_checkpoint(str(tmp_path / f"shufflenetv1-3_{SPE}.ckpt"))
    assert (int(params["epoch_num"].asnumpy()), int(params["step_num"].asnumpy()),
            int(params["global_step_num"].asnumpy()), params["model_size"]) == (3, SPE, 3 * SPE, "0.5x")


def test_recovery_points_on_cpu_and_in_sink_mode(tmp_path):
    for sink_size, expected in ((1, "shufflenetv1-2_2.ckpt"), (3, "shufflenetv1-2_3.ckpt")):
        folder = tmp_path / str(sink_size)
        folder.mkdir()
        saver = CheckpointSaver(str(folder), SPE, keep_max=5, total_epochs=EPOCHS, every_steps=4)
        # stop after step 8 on CPU (step 2 of epoch 2) / after the sink ending at step 9 (sink mode)
        drive([ResumeAt(0), saver], sink_size, stop_after=8 if sink_size == 1 else 3)
        names = [os.path.basename(p) for *_, p in list_checkpoints(str(folder))]
        # sink mode saves at the first sink end past step 8; step 4's recovery point (CPU) went when
        # two newer checkpoints were there
        assert names == [f"shufflenetv1-1_{SPE}.ckpt", expected], names


@pytest.mark.parametrize("sink_size,stop_after,saved", [(SPE, 1, f"shufflenetv1-1_{SPE}.ckpt"),
                                                        (1, 6, f"shufflenetv1-1_{SPE}.ckpt"),
                                                        (1, 8, "shufflenetv1-2_2.ckpt"),
                                                        (3, 3, "shufflenetv1-2_3.ckpt")])
def test_a_signal_saves_the_step_reached(tmp_path, sink_size, stop_after, saved):
    """At an epoch's end (in sink mode: the only place a signal is seen) the stop is that epoch's checkpoint,
    -<epoch>_<steps_per_epoch> (it was once -<epoch>_1, and the finished epoch ran again)."""
    saver = CheckpointSaver(str(tmp_path), SPE, keep_max=5, total_epochs=EPOCHS)
    stopper = StopOnSignal(saver)

    class SignalAt(Callback):  # the signal arrives during the stop_after-th call
        calls = 0

        def on_train_step_end(self, run_context):
            SignalAt.calls += 1
            if SignalAt.calls == stop_after:
                stopper.received = "SIGTERM"

    with pytest.raises(TrainingStopped) as info:
        drive([ResumeAt(0), saver, SignalAt(), stopper], sink_size)
    assert os.path.basename(info.value.saved_path) == saved
    assert info.value.signal_name == "SIGTERM"
    # an epoch's end saved by the saver and then by the stop: one file, written once
    assert sorted(os.path.basename(p) for *_, p in list_checkpoints(str(tmp_path)))[-1] == saved


def test_signal_handler_asks_once_then_stops_at_once():
    stopper = StopOnSignal(None).install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        stopper.uninstall()


class FakeModel:
    def __init__(self, top1s):
        self.top1s, self.calls = list(top1s), 0

    def eval(self, dataset, dataset_sink_mode=False):
        self.calls += 1
        return {"Top_1_Acc": self.top1s.pop(0), "Top_5_Acc": 1.0, "Loss": 0.5}


@pytest.mark.parametrize("sink_size", [1, 3, SPE])
def test_validation_at_epoch_ends_only_keeps_the_best(tmp_path, capsys, sink_size):
    log = RunLog(str(tmp_path))
    model = FakeModel([0.5, 0.75, 0.5])
    best = str(tmp_path / "best.ckpt")
    monitor = ValAccMonitor(model, None, log, SPE, interval=1, total_epochs=EPOCHS, best_ckpt_path=best,
                            extra={"model_size": "0.5x"})
    drive([ResumeAt(0), TrainMonitor(log, lr(), SPE, BATCH, EPOCHS), monitor, RunLogWriter(log, SPE)], sink_size)
    assert model.calls == EPOCHS  # not at every sink
    assert [r.get("val_top1") for r in log.records()] == [0.5, 0.75, 0.5]
    assert [r.get("best_val_top1") for r in log.records()] == [0.5, 0.75, 0.75]
    params = ms.load_checkpoint(best)
    assert int(params["epoch_num"].asnumpy()) == 2 and params["model_size"] == "0.5x"
    assert "epoch 2: val Top_1_Acc 0.7500, best 0.7500 (saved" in capsys.readouterr().out


def test_a_resumed_run_continues_the_step_count_and_the_epoch_loss(tmp_path):
    log = RunLog(str(tmp_path))
    first = TrainMonitor(log, lr(), SPE, BATCH, EPOCHS)
    drive([ResumeAt(0), first, RunLogWriter(log, SPE)], 1, stop_after=8)  # stopped at step 2 of epoch 2
    state = first.state()["train_monitor"]  # as a checkpoint holds it
    assert json.loads(state)["epoch_loss_count"] == 2
    resumed = TrainMonitor(log, lr(), SPE, BATCH, EPOCHS, state=state)
    run = drive([ResumeAt(8), resumed, RunLogWriter(log, SPE)], 1)
    assert run.cb.cur_step_num == EPOCHS * SPE
    straight = RunLog(str(tmp_path / "straight"))
    os.makedirs(straight.directory)
    drive([ResumeAt(0), TrainMonitor(straight, lr(), SPE, BATCH, EPOCHS), RunLogWriter(straight, SPE)], 1)
    assert [r["loss"] for r in log.records()] == [r["loss"] for r in straight.records()]  # to the bit
    assert [r["global_step"] for r in log.records()] == [6, 12, 18]
