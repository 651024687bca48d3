"""How every entry point ends: one rule for exit codes, one ``error: ...`` line for a user's mistake.

Exit codes (all entry points, scripts/ included):

* 0 (``EXIT_OK``): done;
* 2 (``EXIT_USAGE``): the command line or the config is wrong (an unknown key, a value out
  of range, a missing file or folder given as an argument), found before any work:
  :class:`UsageError` (``ConfigError`` is one) or argparse's own usage errors;
* 1 (``EXIT_FAILED``): an input turned out unusable during the work (an image that does not
  decode, a checkpoint that does not fit the network, a full disk): any other ``ValueError``
  of the repo (``DatasetError``, ``CheckpointError``, ...) or a data-pipeline failure;
* 130 (``EXIT_INTERRUPTED``): training stopped by SIGINT/SIGTERM after saving its state.

The message is one line on stderr, ``error: <what is wrong and what would be right>``;
anything else (a bug) propagates with its traceback.
"""
import re
import sys

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "UsageError", "run_reporting_errors",
           "report_error", "dataset_error_message"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A bad argument or config value, found before any work (exit code 2)."""


def report_error(message, code=EXIT_FAILED):
    """Print ``error: message`` on stderr and return ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def run_reporting_errors(func, *args, **kwargs):
    """Call ``func(*args, **kwargs)``; returns ``(0, its result)``, or ``(exit code, None)`` after an error line.

    :class:`UsageError` gives exit code 2, any other ``ValueError`` and a data-pipeline
    ``RuntimeError`` that :func:`dataset_error_message` recognises give 1 (see the module's rule).
    """
    try:
        return EXIT_OK, func(*args, **kwargs)
    except UsageError as exc:
        return report_error(exc, EXIT_USAGE), None
    except ValueError as exc:
        return report_error(exc, EXIT_FAILED), None
    except RuntimeError as exc:
        message = dataset_error_message(exc)
        if message is None:
            raise
        return report_error(message, EXIT_FAILED), None


_BAD_FILE = re.compile(r"The corresponding data file is: (.+?)\.\s")
_CAUSE = re.compile(r"^(?:ValueError|RuntimeError): (?!Traceback)(.+)$", re.MULTILINE)


def dataset_error_message(exc):
    """A one-line message for a failure of MindSpore's data engine, naming the file when it says which.

    Returns None when ``exc`` is not a data-pipeline error.
    """
    text = str(exc)
    match = _BAD_FILE.search(text)
    if match:
        cause = _CAUSE.search(text)
        detail = f" ({cause.group(1).strip()})" if cause else ""
        return (f"cannot decode image {match.group(1)!r}: the file is corrupt, truncated or not an image{detail}; "
                "remove or replace it and run again")
    if "dataset pipeline" in text.lower():
        detail = [line.strip() for line in text.splitlines() if line.strip().startswith("[ERROR]")]
        return "the data pipeline failed: " + (detail[0] if detail else text.strip().splitlines()[0])
    return None
