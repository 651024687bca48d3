"""ShuffleNetV1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018) as a plain MindSpore Cell.

The layout and parameter names follow the original MindSpore model-zoo network,
so checkpoints trained with it keep their meaning: ``first_conv`` (stem),
``features.{i}.branch_main_1`` (1x1 group conv, BN, ReLU), channel shuffle,
``features.{i}.branch_main_2`` (3x3 depthwise conv, BN, 1x1 group conv, BN) and
``classifier``.

This file holds the network only. On CPU, ``src.fast_ops.accelerate`` swaps its
layers in place for native kernels with the same parameters (see that package).
"""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import XavierUniform

__all__ = ["ShuffleNetV1", "ShuffleV1Block", "GlobalAvgPool", "channel_shuffle", "stage_channels",
           "STAGE_CHANNELS", "MODEL_SIZES", "GROUPS", "STAGE_REPEATS", "POOL_PADS"]

# (group, model_size) -> output channels of (stem, stage2, stage3, stage4) (the paper's Table 1).
STAGE_CHANNELS = {
    (3, "0.5x"): (12, 120, 240, 480),
    (3, "1.0x"): (24, 240, 480, 960),
    (3, "1.5x"): (24, 360, 720, 1440),
    (3, "2.0x"): (48, 480, 960, 1920),
    (8, "0.5x"): (16, 192, 384, 768),
    (8, "1.0x"): (24, 384, 768, 1536),
    (8, "1.5x"): (24, 576, 1152, 2304),
    (8, "2.0x"): (48, 768, 1536, 3072),
}
MODEL_SIZES = ("0.5x", "1.0x", "1.5x", "2.0x")
GROUPS = (3, 8)
STAGE_REPEATS = (4, 8, 4)
# "same": MindSpore's pad_mode="same" pooling of the model zoo (pads right/bottom, averages
# only real pixels); "symmetric": pad 1 on every side, padding counted in the average
# (PyTorch's padding=1), needed to compute the function of Megvii's converted weights.
POOL_PADS = ("same", "symmetric")


def stage_channels(model_size, group):
    """(stem, stage 2, stage 3, stage 4) output channels of a variant; ValueError naming the allowed values."""
    if group not in GROUPS:
        raise ValueError(f"group={group!r} is not supported; choose one of {list(GROUPS)}")
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size={model_size!r} is not supported; choose one of {list(MODEL_SIZES)}")
    return STAGE_CHANNELS[(group, model_size)]


def channel_shuffle(x, group):
    """Interleave the channels of ``group`` groups: (B, C, H, W) -> (B, C/g, g, H, W) -> swap -> (B, C, H, W)."""
    _, channels, height, width = x.shape
    # -1 for the batch axis keeps exported graphs (ONNX) batch-agnostic.
    x = ops.reshape(x, (-1, channels // group, group, height, width))
    x = ops.transpose(x, (0, 2, 1, 3, 4))
    return ops.reshape(x, (-1, channels, height, width))


def _pool(kind, pool_pad):
    """3x3 stride-2 max or average pooling in one of ``POOL_PADS``."""
    if pool_pad not in POOL_PADS:
        raise ValueError(f"pool_pad={pool_pad!r} is not supported; choose one of {list(POOL_PADS)}")
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    if pool_pad == "same":
        return cls(kernel_size=3, stride=2, pad_mode="same")
    return cls(kernel_size=3, stride=2, pad_mode="pad", padding=1)


def _conv(in_channels, out_channels, kernel_size, stride=1, group=1, weight_init=None):
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                     padding=kernel_size // 2, group=group, has_bias=False, weight_init=weight_init)


class GlobalAvgPool(nn.Cell):
    """(B, C, H, W) -> (B, C): the mean over H and W."""

    def construct(self, x):
        return ops.mean(x, axis=(2, 3))


class ShuffleV1Block(nn.Cell):
    """One ShuffleNetV1 unit.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels of the unit (stride 2: including the pooled shortcut).
        mid_channels (int): bottleneck width.
        group (int): groups of the 1x1 convolutions and of the channel shuffle.
        stride (int): 1 (residual add) or 2 (concat with an average-pooled shortcut).
        first_group (bool): whether the first 1x1 conv is grouped (False only for the
            very first unit of stage 2, whose input is the narrow stem).
        pool_pad (str): padding of the stride-2 shortcut pooling, see ``POOL_PADS``.
    """

    def __init__(self, in_channels, out_channels, mid_channels, group, stride, first_group=True, pool_pad="same"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride!r} is not supported; choose 1 or 2")
        self.stride = stride
        self.group = group
        main_out = out_channels - in_channels if stride == 2 else out_channels
        self.branch_main_1 = nn.SequentialCell([
            _conv(in_channels, mid_channels, 1, group=group if first_group else 1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
        ])
        self.branch_main_2 = nn.SequentialCell([
            _conv(mid_channels, mid_channels, 3, stride=stride, group=mid_channels),
            nn.BatchNorm2d(mid_channels),
            _conv(mid_channels, main_out, 1, group=group),
            nn.BatchNorm2d(main_out),
        ])
        self.branch_proj = _pool("avg", pool_pad) if stride == 2 else None
        self.relu = nn.ReLU()

    def construct(self, x):
        main = channel_shuffle(self.branch_main_1(x), self.group)
        main = self.branch_main_2(main)
        if self.stride == 1:
            return self.relu(x + main)
        return self.relu(ops.cat((self.branch_proj(x), main), axis=1))


class ShuffleNetV1(nn.Cell):
    """ShuffleNetV1 image classifier.

    Args:
        model_size (str): width multiplier, one of ``MODEL_SIZES``.
        group (int): groups of the pointwise convolutions, one of ``GROUPS``.
        num_classes (int): size of the classifier output.
        pool_pad (str): "same" (model zoo, default) or "symmetric" (Megvii's PyTorch weights).

    Inputs:
        x (Tensor): float32 images of shape (B, 3, H, W), H and W at least 32.

    Returns:
        Tensor of logits, shape (B, num_classes).
    """

    def __init__(self, model_size="2.0x", group=3, num_classes=1000, pool_pad="same"):
        super().__init__()
        stem, *stages = stage_channels(model_size, group)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
        self.model_size = model_size
        self.group = group
        self.num_classes = num_classes
        self.pool_pad = pool_pad
        self.stage_out_channels = (stem, *stages)

        self.first_conv = nn.SequentialCell([
            _conv(3, stem, 3, stride=2, weight_init=XavierUniform()),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        ])
        self.maxpool = _pool("max", pool_pad)
        units = []
        in_channels = stem
        for stage_idx, (out_channels, repeats) in enumerate(zip(stages, STAGE_REPEATS)):
            for unit_idx in range(repeats):
                units.append(ShuffleV1Block(
                    in_channels, out_channels, mid_channels=out_channels // 4, group=group,
                    stride=2 if unit_idx == 0 else 1,
                    first_group=not (stage_idx == 0 and unit_idx == 0), pool_pad=pool_pad))
                in_channels = out_channels
        self.features = nn.SequentialCell(units)
        self.num_features = in_channels
        self.global_pool = GlobalAvgPool()
        self.classifier = nn.Dense(in_channels, num_classes, has_bias=True)

    def forward_features(self, x):
        """Backbone: images -> (B, num_features, H/32, W/32) feature map."""
        x = self.first_conv(x)
        x = self.maxpool(x)
        return self.features(x)

    def forward_head(self, x):
        """Global average pooling and the classifier: feature map -> logits."""
        return self.classifier(self.global_pool(x))

    def construct(self, x):
        return self.forward_head(self.forward_features(x))
