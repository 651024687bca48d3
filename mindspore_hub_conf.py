"""MindSpore Hub entry: ``create_network("shufflenetv1", model_size=..., group=..., num_classes=...)``."""
from src.shufflenetv1 import ShuffleNetV1

__all__ = ["create_network"]

_NETWORKS = {"shufflenetv1": ShuffleNetV1}


def create_network(name, *args, **kwargs):
    """Return the network called ``name`` built with ``kwargs`` (e.g. model_size="2.0x", group=3)."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown network name {name!r}; this hub config provides {sorted(_NETWORKS)}")
    return _NETWORKS[name](*args, **kwargs)
