"""ShuffleNetV1 for MindSpore: network, data pipeline, loss, LR schedules and helpers."""
