"""How the entry points turn a user's mistake into one ``error: ...`` line and exit code 1."""
import sys

from src.dataset import dataset_error_message


def run_reporting_errors(func, *args, **kwargs):
    """Call ``func(*args, **kwargs)``; returns ``(0, its result)``, or ``(1, None)`` after an error line.

    Reported on stderr as ``error: <message>``: every ``ValueError`` (the repo's own errors,
    ``DatasetError``, ``CheckpointError``, ``ConfigError``... derive from it, and name what is
    wrong), and a ``RuntimeError`` of MindSpore's data engine that
    :func:`src.dataset.dataset_error_message` can trace to a file. Anything else is a bug
    and propagates with its traceback.
    """
    try:
        return 0, func(*args, **kwargs)
    except ValueError as exc:
        message = str(exc)
    except RuntimeError as exc:
        message = dataset_error_message(exc)
        if message is None:
            raise
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1, None
