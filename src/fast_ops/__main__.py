"""``python -m src.fast_ops``: build the native kernels into the cache now and print where they are.

Exit code 0 when built (or already cached), 1 when no library can be built here (the
network then uses the plain nn.Conv2d path on CPU).
"""
import sys

from .native import FastOpsUnavailable, build_library, cache_dir


def main(argv=None):
    del argv
    try:
        path = build_library()
    except FastOpsUnavailable as err:
        print(f"fast CPU kernels unavailable, the plain nn.Conv2d path will be used: {err}",
              file=sys.stderr)
        return 1
    print(f"fast CPU kernels: {path} (cache: {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
