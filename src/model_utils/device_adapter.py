"""Where a run is: device, rank and job id from the launcher's environment.

The launch scripts (and ModelArts) describe a process through environment
variables; these helpers read them with safe defaults for a plain local run.
"""
import os

__all__ = ["get_device_id", "get_device_num", "get_rank_id", "get_job_id", "use_device"]


def _env_int(name, default):
    value = os.getenv(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def get_device_id(default=0):
    """Device index of this process (DEVICE_ID), ``default`` when unset."""
    return _env_int("DEVICE_ID", default)


def get_device_num():
    """Number of processes in the job (RANK_SIZE), 1 when unset."""
    return _env_int("RANK_SIZE", 1)


def get_rank_id():
    """Rank of this process in the job (RANK_ID), 0 when unset."""
    return _env_int("RANK_ID", 0)


def get_job_id():
    """ModelArts job id (JOB_ID), "default" when unset."""
    return os.getenv("JOB_ID") or "default"


def use_device(device_target, device_id=None):
    """``mindspore.set_device``, with a ``ValueError`` a user can act on when this MindSpore lacks the device.

    (MindSpore raises a long ``RuntimeError`` when, e.g., the CPU-only wheel is asked for GPU.)
    """
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    try:
        if device_id is None:
            ms.set_device(device_target)
        else:
            ms.set_device(device_target, device_id)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"device_target={device_target} cannot be used with this MindSpore installation ({first}); "
                         f"install the MindSpore package for {device_target} or pass --device_target CPU") from None
