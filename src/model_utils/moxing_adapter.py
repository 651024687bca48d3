"""ModelArts adapter: copy data and checkpoints in, results out, through ``moxing``.

``moxing`` exists only on Huawei ModelArts; it is imported when
``enable_modelarts`` is on, never at import time of this module.
"""
import functools
import hashlib
import os
import time

from .device_adapter import get_device_id, get_device_num, get_job_id

__all__ = ["moxing_wrapper", "sync_data"]

def _import_moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise RuntimeError("enable_modelarts is True but the 'moxing' package is not installed; "
                           "it exists only on Huawei ModelArts. Run with --enable_modelarts False "
                           "on other machines.") from exc
    return moxing


def sync_data(from_path, to_path):
    """Copy ``from_path`` to ``to_path`` once per machine (the first local rank copies)."""
    mox = _import_moxing()
    tag = hashlib.md5(f"{get_job_id()}:{from_path}:{to_path}".encode()).hexdigest()[:12]
    lock = f"/tmp/shufflenetv1_sync_{tag}.lock"
    if get_device_num() == 1 or get_device_id() % min(get_device_num(), 8) == 0:
        if not os.path.exists(lock):
            print(f"copying {from_path} -> {to_path}", flush=True)
            mox.file.copy_parallel(from_path, to_path)
            with open(lock, "w", encoding="utf-8"):
                pass
    while not os.path.exists(lock):  # other local ranks wait for the copy
        time.sleep(1)


def moxing_wrapper(config, pre_process=None, post_process=None):
    """Decorator for an entry point's ``run(config)``: on ModelArts, copy inputs in before
    and ``output_path`` out to ``train_url`` after; elsewhere just call the function."""

    def wrapper(run_func):
        @functools.wraps(run_func)
        def wrapped(*args, **kwargs):
            if not config.enable_modelarts:
                return run_func(*args, **kwargs)
            if config.data_url:
                sync_data(config.data_url, config.data_path)
            if config.checkpoint_url:
                sync_data(config.checkpoint_url, config.load_path)
            os.makedirs(config.output_path, exist_ok=True)
            if pre_process:
                pre_process()
            try:
                return run_func(*args, **kwargs)
            finally:
                if post_process:
                    post_process()
                if config.train_url:
                    print(f"copying {config.output_path} -> {config.train_url}", flush=True)
                    _import_moxing().file.copy_parallel(config.output_path, config.train_url)

        return wrapped

    return wrapper
