"""ShuffleNetV1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018) as a MindSpore Cell.

The layout and parameter names follow the original MindSpore model-zoo network,
so checkpoints trained with it keep their meaning: ``first_conv`` (stem),
``features.{i}.branch_main_1`` (1x1 conv, BN, ReLU), channel shuffle,
``features.{i}.branch_main_2`` (3x3 depthwise conv, BN, 1x1 conv, BN) and
``classifier``.
"""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import XavierUniform

from .fast_ops import GlobalAvgPool, Pool3x3s2, batchnorm, conv2d, conv_bn_sequence, resolve_conv_impl

__all__ = ["ShuffleNetV1", "ShuffleV1Block", "channel_shuffle", "STAGE_CHANNELS",
           "MODEL_SIZES", "GROUPS", "STAGE_REPEATS", "POOL_PADS", "CONV_IMPLS", "shufflenetv1",
           "network_from_config"]

# (group, model_size) -> output channels of (stem, stage2, stage3, stage4).
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
# "plain": nn.Conv2d everywhere; "fast": CPU kernels for the grouped/depthwise convs;
# "auto": fast on CPU, plain elsewhere. Parameter names and shapes are the same for all.
CONV_IMPLS = ("auto", "fast", "plain")


def _pool(kind, pool_pad, fast=False):
    if fast:
        return Pool3x3s2(kind, pool_pad)
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    if pool_pad == "same":
        return cls(kernel_size=3, stride=2, pad_mode="same")
    return cls(kernel_size=3, stride=2, pad_mode="pad", padding=1)


def channel_shuffle(x, group):
    """Interleave the channels of ``group`` groups: (B, C, H, W) -> (B, C/g, g, H, W) -> swap -> (B, C, H, W)."""
    _, channels, height, width = x.shape
    # -1 for the batch axis keeps exported graphs (ONNX) batch-agnostic.
    x = ops.reshape(x, (-1, channels // group, group, height, width))
    x = ops.transpose(x, (0, 2, 1, 3, 4))
    return ops.reshape(x, (-1, channels, height, width))


def _check_variant(model_size, group, pool_pad="same", conv_impl="auto"):
    if pool_pad not in POOL_PADS:
        raise ValueError(f"pool_pad={pool_pad!r} is not supported; choose one of {list(POOL_PADS)}")
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl={conv_impl!r} is not supported; choose one of {list(CONV_IMPLS)}")
    if group not in GROUPS:
        raise ValueError(f"group={group!r} is not supported; choose one of {list(GROUPS)}")
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size={model_size!r} is not supported; choose one of {list(MODEL_SIZES)}")


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
        conv_impl (str): "auto", "fast" or "plain", see ``CONV_IMPLS``.
    """

    def __init__(self, in_channels, out_channels, mid_channels, group, stride, first_group=True,
                 pool_pad="same", conv_impl="plain"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride!r} is not supported; choose 1 or 2")
        self.stride = stride
        self.group = group
        main_out = out_channels - in_channels if stride == 2 else out_channels
        fast = resolve_conv_impl(conv_impl) == "fast"
        # The fast depthwise conv reads its input through the channel shuffle (one copy less).
        self.shuffle_in_conv = fast and group > 1
        # Fast path: conv_bn_sequence folds each BN into its convolution in eval mode.
        self.branch_main_1 = conv_bn_sequence([
            conv2d(in_channels, mid_channels, 1, stride=1, pad_mode="pad", padding=0,
                   group=group if first_group else 1, has_bias=False, fast=fast),
            *batchnorm(mid_channels, fast, relu=True),
        ], fast)
        self.branch_main_2 = conv_bn_sequence([
            conv2d(mid_channels, mid_channels, 3, stride=stride, pad_mode="pad", padding=1,
                   group=mid_channels, has_bias=False, fast=fast,
                   shuffle_groups=group if self.shuffle_in_conv else 1),
            *batchnorm(mid_channels, fast),
            conv2d(mid_channels, main_out, 1, stride=1, pad_mode="pad", padding=0,
                   group=group, has_bias=False, fast=fast),
            *batchnorm(main_out, fast),
        ], fast)
        if stride == 2:
            self.branch_proj = _pool("avg", pool_pad, fast)
        self.relu = nn.ReLU()
        # Fast path: branch_main_2 (a ConvBNSequence) also does the residual join.
        self.fused_join = fast and stride == 1

    def construct(self, x):
        main = self.branch_main_1(x)
        if self.group > 1 and not self.shuffle_in_conv:
            main = channel_shuffle(main, self.group)
        if self.fused_join:
            return self.branch_main_2.forward_add_relu(main, x)
        main = self.branch_main_2(main)
        if self.stride == 1:
            return self.relu(x + main)
        return self.relu(ops.cat((self.branch_proj(x), main), axis=1))


class ShuffleNetV1(nn.Cell):
    """ShuffleNetV1 image classifier.

    Args:
        model_size (str): width multiplier, one of "0.5x", "1.0x", "1.5x", "2.0x".
        group (int): groups of the pointwise convolutions, 3 or 8.
        num_classes (int): size of the classifier output.
        pool_pad (str): "same" (model zoo, default) or "symmetric" (Megvii's PyTorch weights).
        conv_impl (str): "auto", "fast" or "plain"; see ``CONV_IMPLS``.

    Inputs:
        x (Tensor): float32 images of shape (B, 3, H, W), H and W at least 32.

    Returns:
        Tensor of logits, shape (B, num_classes).
    """

    def __init__(self, model_size="2.0x", group=3, num_classes=1000, pool_pad="same", conv_impl="auto"):
        super().__init__()
        _check_variant(model_size, group, pool_pad, conv_impl)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
        self.model_size = model_size
        self.group = group
        self.num_classes = num_classes
        self.pool_pad = pool_pad
        self.conv_impl = conv_impl
        # What "auto" / "fast" became here: "fast" (CPU kernels) or "plain" (nn.Conv2d).
        self.conv_impl_used = resolve_conv_impl(conv_impl)
        fast = self.conv_impl_used == "fast"
        stem, *stages = STAGE_CHANNELS[(group, model_size)]
        self.stage_out_channels = (stem, *stages)

        self.first_conv = conv_bn_sequence([
            conv2d(3, stem, 3, stride=2, pad_mode="pad", padding=1, has_bias=False,
                   weight_init=XavierUniform(), fast=fast),
            *batchnorm(stem, fast, relu=True),
        ], fast)
        self.maxpool = _pool("max", pool_pad, fast)

        units = []
        in_channels = stem
        for stage_idx, (out_channels, repeats) in enumerate(zip(stages, STAGE_REPEATS)):
            for unit_idx in range(repeats):
                units.append(ShuffleV1Block(
                    in_channels, out_channels, mid_channels=out_channels // 4, group=group,
                    stride=2 if unit_idx == 0 else 1,
                    first_group=not (stage_idx == 0 and unit_idx == 0), pool_pad=pool_pad,
                    conv_impl=self.conv_impl_used))
                in_channels = out_channels
        self.features = nn.SequentialCell(units)
        self.num_features = in_channels
        self.classifier = nn.Dense(in_channels, num_classes, has_bias=True)
        self.global_pool = GlobalAvgPool() if fast else None

    def forward_features(self, x):
        """Backbone: images -> (B, num_features, H/32, W/32) feature map."""
        x = self.first_conv(x)
        x = self.maxpool(x)
        return self.features(x)

    def forward_head(self, x):
        """Global average pooling and the classifier: feature map -> logits."""
        if self.global_pool is not None:
            x = self.global_pool(x)
        else:
            x = ops.mean(x, axis=(2, 3))
        return self.classifier(x)

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


def shufflenetv1(model_size="2.0x", group=3, num_classes=1000, **kwargs):
    """Factory used by the entry points and the hub config; see :class:`ShuffleNetV1`."""
    return ShuffleNetV1(model_size=model_size, group=group, num_classes=num_classes, **kwargs)


def network_from_config(cfg, conv_impl=None):
    """Build the network described by a config (model_size, group, num_classes, pool_pad, conv_impl).

    ``conv_impl`` overrides ``cfg.conv_impl`` (export passes "plain").
    """
    return ShuffleNetV1(model_size=cfg.model_size, group=cfg.group, num_classes=cfg.num_classes,
                        pool_pad=cfg.pool_pad, conv_impl=conv_impl or cfg.conv_impl)
