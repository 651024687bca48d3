"""ModelArts adapter: copy data and checkpoints in, results out, through ``moxing``.

With ``enable_modelarts`` an entry point's run is wrapped (:func:`moxing_wrapper`) so that

1. ``data_url`` is copied to ``data_path`` and ``checkpoint_url`` to ``load_path`` (once per
   machine: the first local device copies, the others wait);
2. the config's paths point into those local copies (:func:`localise_paths`): relative
   data folders are read inside ``data_path`` (an empty one is ``data_path`` itself),
   relative checkpoints inside ``load_path`` (an empty one is the file ``checkpoint_url``
   names), and the run's outputs (checkpoints and logs under ``save_ckpt_path``, exports
   under ``file_name``, evaluation logs) go inside ``output_path``;
3. the paths are checked (``validate``) and the run goes;
4. ``output_path`` is copied to ``train_url`` at the end, also after a failure, so that
   nothing written is lost.

``moxing`` exists only on Huawei ModelArts; it is imported when ``enable_modelarts`` is on,
never at import time of this module. Without it the run ends with one error line.
"""
import functools
import hashlib
import os
import time

from .config import validate
from .device_adapter import get_device_id, get_device_num, get_job_id
from .errors import UsageError

__all__ = ["moxing_wrapper", "sync_data", "localise_paths"]


def _import_moxing():
    try:
        import moxing  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise UsageError("enable_modelarts is True but the 'moxing' package is not installed; it exists only on "
                         "Huawei ModelArts. Run with --enable_modelarts False on other machines") from exc
    return moxing


def sync_data(mox, from_path, to_path):
    """Copy ``from_path`` (a folder, or a file) to ``to_path`` once per machine (the first local device copies)."""
    tag = hashlib.md5(f"{get_job_id()}:{from_path}:{to_path}".encode()).hexdigest()[:12]
    lock = f"/tmp/shufflenetv1_sync_{tag}.lock"
    if get_device_num() == 1 or get_device_id() % min(get_device_num(), 8) == 0:
        if not os.path.exists(lock):
            print(f"copying {from_path} -> {to_path}", flush=True)
            if from_path.endswith(".ckpt"):
                os.makedirs(os.path.dirname(to_path), exist_ok=True)
                mox.file.copy(from_path, to_path)
            else:
                mox.file.copy_parallel(from_path, to_path)
            with open(lock, "w", encoding="utf-8"):
                pass
    while not os.path.exists(lock):  # other local devices wait for the copy
        time.sleep(1)


def _inside(folder, path):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(folder, path))


def localise_paths(cfg, purpose, checkpoint_file=""):
    """Point the config's paths into the local copies (see the module); prints each change.

    ``checkpoint_file`` is the local copy of a ``checkpoint_url`` that names one file.
    """
    changes = {}
    data_keys = ("dataset_path",) if cfg.is_transfer else ("train_dataset_path", "eval_dataset_path")
    for key in data_keys:
        if cfg[key]:
            changes[key] = _inside(cfg.data_path, cfg[key])
    main_data = "dataset_path" if cfg.is_transfer else \
        ("train_dataset_path" if purpose == "train" else "eval_dataset_path")
    if purpose in ("train", "eval", "predict") and not cfg[main_data]:
        changes[main_data] = cfg.data_path
    ckpt_key = "resume" if purpose == "train" else "ckpt_path"
    if cfg[ckpt_key] and cfg[ckpt_key] != "auto":
        changes[ckpt_key] = _inside(cfg.load_path, cfg[ckpt_key])
    elif not cfg[ckpt_key] and checkpoint_file:
        changes[ckpt_key] = checkpoint_file
    changes["save_ckpt_path"] = _inside(cfg.output_path, cfg.save_ckpt_path)
    if purpose == "export":
        changes["file_name"] = _inside(cfg.output_path, cfg.file_name)
    for key, value in changes.items():
        if value != cfg[key]:
            print(f"ModelArts: {key}={value} (was {cfg[key]!r})", flush=True)
            cfg[key] = value


def moxing_wrapper(cfg, purpose):
    """Decorator for an entry point's ``run(cfg)``: on ModelArts, copy inputs in, localise and check
    the paths, run, and copy ``output_path`` out to ``train_url``; elsewhere just call the function."""

    def wrapper(run_func):
        @functools.wraps(run_func)
        def wrapped(*args, **kwargs):
            if not cfg.enable_modelarts:
                return run_func(*args, **kwargs)
            mox = _import_moxing()
            if cfg.data_url:
                sync_data(mox, cfg.data_url, cfg.data_path)
            checkpoint_file = ""
            if cfg.checkpoint_url:
                if cfg.checkpoint_url.endswith(".ckpt"):
                    checkpoint_file = os.path.join(cfg.load_path, os.path.basename(cfg.checkpoint_url))
                    sync_data(mox, cfg.checkpoint_url, checkpoint_file)
                else:
                    sync_data(mox, cfg.checkpoint_url, cfg.load_path)
            os.makedirs(cfg.output_path, exist_ok=True)
            localise_paths(cfg, purpose, checkpoint_file)
            try:
                validate(cfg, purpose)
                return run_func(*args, **kwargs)
            finally:
                if cfg.train_url:
                    print(f"copying {cfg.output_path} -> {cfg.train_url}", flush=True)
                    mox.file.copy_parallel(cfg.output_path, cfg.train_url)

        return wrapped

    return wrapper
