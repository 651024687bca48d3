"""A stand-in for Huawei's moxing package (it exists only on ModelArts), for tests/test_modelarts.py.

``obs://bucket/path`` is the local folder ``$MOXING_OBS_ROOT/bucket/path``; every copy is
appended to ``$MOXING_LOG`` as a JSON line ``{"op", "src", "dst"}``.
"""
import json
import os
import shutil

__all__ = ["file"]


def _local(url):
    if url.startswith("obs://"):
        return os.path.join(os.environ["MOXING_OBS_ROOT"], url[len("obs://"):])
    return url


def _record(op, src, dst):
    with open(os.environ["MOXING_LOG"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"op": op, "src": src, "dst": dst}) + "\n")


class file:  # pylint: disable=invalid-name,too-few-public-methods  (moxing's own name)
    """moxing.file: copy and copy_parallel between OBS and local paths."""

    @staticmethod
    def copy_parallel(src_url, dst_url):
        _record("copy_parallel", src_url, dst_url)
        shutil.copytree(_local(src_url), _local(dst_url), dirs_exist_ok=True)

    @staticmethod
    def copy(src_url, dst_url):
        _record("copy", src_url, dst_url)
        os.makedirs(os.path.dirname(_local(dst_url)) or ".", exist_ok=True)
        shutil.copy2(_local(src_url), _local(dst_url))
