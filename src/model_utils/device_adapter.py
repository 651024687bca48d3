"""Where a run is and what it runs on: device, rank and job from the launcher's environment; the context.

The launch scripts (and ModelArts) describe a process through environment variables;
these helpers read them with safe defaults for a plain local run, set MindSpore's
context, and decide the mixed-precision level the device can use.
"""
import os

from .errors import UsageError

__all__ = ["get_device_id", "get_device_num", "get_rank_id", "get_job_id", "use_device", "init_context",
           "resolve_amp_level"]

_LAUNCHER_ENV = ("MS_ROLE", "RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH", "OMPI_COMM_WORLD_RANK")


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
    """``mindspore.set_device``, with a :class:`UsageError` a user can act on when this MindSpore lacks the device.

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
        raise UsageError(f"device_target={device_target} cannot be used with this MindSpore installation ({first}); "
                         f"install the MindSpore package for {device_target} or pass --device_target CPU") from None


def init_context(cfg, distributed=None):
    """Execution mode, device and (when distributed) the communication group; returns (rank, group_size).

    ``distributed`` defaults to ``cfg.is_distributed``; evaluation and export pass False.
    """
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "GRAPH" else ms.PYNATIVE_MODE)
    if not (cfg.is_distributed if distributed is None else distributed):
        use_device(cfg.device_target, get_device_id(cfg.device_id))
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init  # pylint: disable=import-outside-toplevel
    if not any(os.getenv(k) for k in _LAUNCHER_ENV):
        raise UsageError("is_distributed=True needs a launcher that starts one process per device: "
                         "scripts/run_distribute_train.sh (Ascend), scripts/run_distribute_train_gpu.sh (GPU) "
                         "or scripts/run_distribute_train_cpu.sh (CPU); for one device use --is_distributed False")
    if os.getenv("MS_ROLE"):  # msrun: MindSpore gives each rank its device
        use_device(cfg.device_target)
    else:  # rank table: DEVICE_ID from the launch script; mpirun: the local rank
        use_device(cfg.device_target, int(os.getenv("OMPI_COMM_WORLD_LOCAL_RANK", str(get_device_id(cfg.device_id)))))
    init()
    rank, group_size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return rank, group_size


def resolve_amp_level(cfg):
    """The mixed-precision level training uses: ``cfg.amp_level``, except O0 on CPU (with one note).

    On CPU, float16 brings no speed (MindSpore's CPU kernels are float32; measured slower,
    see docs/cpu_speed.md) and the native kernels of src/fast_ops take float32 only, so
    default_config.yaml's O3 (an Ascend setting) trains in float32 there.
    """
    if cfg.device_target == "CPU" and cfg.amp_level != "O0":
        print(f"note: amp_level={cfg.amp_level} is for GPU/Ascend; on CPU training computes in float32 "
              "(amp_level O0): float16 is slower on CPU and the fast CPU kernels take float32 only", flush=True)
        return "O0"
    return cfg.amp_level
