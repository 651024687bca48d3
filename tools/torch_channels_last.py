"""The PyTorch yardstick in channels_last memory format (PyTorch's fastest eager CPU mode for this network).

Run by tools/compare_with_yardstick.py as a program of its own, in the yardstick's folder
(``--bench_dir``), with the interpreter that has torch; this repo never imports the yardstick:

    cd ../shared/bench && python /path/to/tools/torch_channels_last.py 2.0x 32 224

It times the same steps as the yardstick's torch_bench.py (SGD with momentum and weight
decay, label-smoothed cross entropy, random data; 2 warm-up steps, then 5 timed) on the
yardstick's own network (torch_ref.ShuffleNetV1 of the current folder), with the network
and its input in channels_last, and prints one line in torch_bench.py's format:
``... train X img/s, infer Y img/s``.
"""
import os
import sys
import time


def _throughput(step, batch, steps, warmup=2):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main(model_size="2.0x", batch=32, size=224, steps=5):
    import torch

    sys.path.insert(0, os.getcwd())  # the yardstick's folder (the caller runs this there)
    from torch_ref import ShuffleNetV1

    torch.manual_seed(0)
    net = ShuffleNetV1(3, model_size).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=4e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,))

    def train_step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    net.train()
    train = _throughput(train_step, batch, steps)
    net.eval()
    with torch.no_grad():
        infer = _throughput(lambda: net(x), batch, steps)
    print(f"torch {torch.__version__} channels_last ShuffleNetV1 {model_size} g3 batch {batch} {size}px: "
          f"train {train:.1f} img/s, infer {infer:.1f} img/s")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(arguments[0] if arguments else "2.0x", *(int(a) for a in arguments[1:3]))
