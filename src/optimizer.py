"""The optimizer of training: Momentum with weight decay on conv and dense weights, and its restore on resume."""
import mindspore as ms
from mindspore import nn

__all__ = ["build_optimizer", "restore_optimizer"]


def build_optimizer(net, cfg, lr):
    """Momentum on the per-step learning rates ``lr``; weight decay on conv and dense weights only (not BN,
    not biases); with ``cfg.freeze_backbone`` only the classifier trains."""
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
