"""Writing a file so that it appears whole or not at all."""
import contextlib
import os

__all__ = ["replace_when_done"]


@contextlib.contextmanager
def replace_when_done(path, temp):
    """Write to ``temp`` in the ``with`` block; when the block ends normally, rename it to ``path``.

    The rename is atomic on one file system, so ``path`` is either the old file or the whole
    new one. When the block raises, ``temp`` is removed and ``path`` is left as it was.
    """
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
