"""Build and locate the native library of the fast CPU layers (``fast_ops.cc``).

The library is compiled once per source version and compiler into a cache folder,
``$SHUFFLENET_MS_CACHE`` or ``~/.cache/shufflenetv1_ms`` (``$XDG_CACHE_HOME`` is
honoured), under a name keyed by a hash of the source, the compiler's version and
the flags. The build writes a temporary file and renames it into place, so several
processes building at once all end up with the same complete library.

The flags are portable across x86_64 machines (no ``-march=native``): the hot loops
carry ``target_clones`` for AVX2/AVX-512 and the best is chosen when the library loads.

``python -m src.fast_ops`` builds the library ahead of time (the README's set-up).
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings

__all__ = ["CXX", "CXXFLAGS", "LDLIBS", "SOURCE", "ABI_VERSION", "FastOpsUnavailable", "cache_dir", "library_path",
           "build_library", "build_error", "gemm_available", "peak_gflops", "warn_once", "reset"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast_ops.cc")
# The compiler; tests point it at a missing path to exercise the fallback.
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp-simd", "-pthread", "-fno-math-errno")
LDLIBS = ("-ldl",)
ABI_VERSION = 12

_lock = threading.Lock()
_state = {"path": None, "error": None, "warned": False}


class FastOpsUnavailable(RuntimeError):
    """The native library could not be built or loaded (the message says why)."""


def cache_dir():
    """Folder holding the built libraries."""
    explicit = os.environ.get("SHUFFLENET_MS_CACHE")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "shufflenetv1_ms")


def _compiler_identity(cxx):
    exe = shutil.which(cxx)
    if exe is None:
        raise FastOpsUnavailable(f"C++ compiler {cxx!r} not found (set CXX or install g++)")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        raise FastOpsUnavailable(f"C++ compiler {exe!r} does not run: {err}") from err
    return exe, out.stdout.strip()


def _load_check(path):
    try:
        lib = ctypes.CDLL(path)
        version = lib.fast_ops_abi_version()
    except (OSError, AttributeError) as err:
        raise FastOpsUnavailable(f"cannot load {path}: {err}") from err
    if version != ABI_VERSION:
        raise FastOpsUnavailable(f"{path} has ABI version {version}, expected {ABI_VERSION}")


def build_library(cxx=None, directory=None):
    """Compile ``fast_ops.cc`` into the cache (unless already there) and return the library path.

    Raises:
        FastOpsUnavailable: no compiler, a failed compile, or a library that does not load.
    """
    cxx = cxx or CXX
    directory = directory or cache_dir()
    exe, identity = _compiler_identity(cxx)
    with open(SOURCE, "rb") as handle:
        source = handle.read()
    key = hashlib.sha256(b"\0".join([source, identity.encode(), " ".join(CXXFLAGS + LDLIBS).encode()])).hexdigest()[:16]
    path = os.path.join(directory, f"fast_ops-{key}.so")
    if not os.path.exists(path):
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".fast_ops-{key}-", suffix=".so", dir=directory)
            os.close(fd)
        except OSError as err:
            raise FastOpsUnavailable(f"cannot write to the build cache {directory}: {err}") from err
        try:
            # Compilers older than GCC 11 lack the x86-64-v3/v4 clones: then one baseline build.
            for extra in ((), ("-DFAST_OPS_NO_CLONES",)):
                cmd = [exe, *CXXFLAGS, *extra, "-o", tmp, SOURCE, *LDLIBS]
                try:
                    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                except (OSError, subprocess.SubprocessError) as err:
                    raise FastOpsUnavailable(f"{' '.join(cmd)} failed: {err}") from err
                if result.returncode == 0:
                    break
            if result.returncode != 0:
                tail = "\n".join(result.stderr.strip().splitlines()[-15:])
                raise FastOpsUnavailable(f"{' '.join(cmd)} failed (exit {result.returncode}):\n{tail}")
            os.chmod(tmp, 0o755)
            # Atomic: a concurrent builder renames an identical file over it.
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    _load_check(path)
    return path


def warn_once(reason):
    """Warn, once per process, that the network falls back to the plain nn.Conv2d path, and why."""
    if _state["warned"]:
        return
    _state["warned"] = True
    warnings.warn("ShuffleNetV1: the fast CPU kernels are unavailable, so the network uses the plain "
                  "nn.Conv2d path (10-100x slower on CPU). Reason: " + reason, RuntimeWarning,
                  stacklevel=3)


def _check_white_list(path):
    # MindSpore refuses AOT libraries outside MS_CUSTOM_AOT_WHITE_LIST when it is set.
    allowed = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")
    if allowed:
        allowed = os.path.realpath(allowed)
        if os.path.commonpath([os.path.realpath(path), allowed]) != allowed:
            raise FastOpsUnavailable(f"{path} is outside MS_CUSTOM_AOT_WHITE_LIST={allowed}; set "
                                     f"SHUFFLENET_MS_CACHE to a folder inside it")


def library_path(warn=True):
    """Path of the built library, building it on first use; None (and one warning) if that fails."""
    with _lock:
        if _state["path"] is None and _state["error"] is None:
            try:
                path = build_library()
                _check_white_list(path)
                _state["path"] = path
            except FastOpsUnavailable as err:
                _state["error"] = str(err)
        if _state["error"] is not None and warn:
            warn_once(_state["error"])
        return _state["path"]


def build_error():
    """Why the library is unavailable (after :func:`library_path` failed), else None."""
    return _state["error"]


def gemm_available():
    """Whether the 1x1 convolution kernels can use oneDNN's sgemm, which MindSpore loads (False without a library)."""
    path = library_path(warn=False)
    if path is None:
        return False
    import mindspore  # noqa: F401  (loads libdnnl.so.3 into the process)
    return bool(ctypes.CDLL(path).fast_ops_gemm_available())


def reset():
    """Forget the build result and the warning (tests)."""
    with _lock:
        _state.update(path=None, error=None, warned=False)


def peak_gflops(seconds=0.5):
    """The machine's measured float32 peak (GFLOP/s: FMA chains on every kernel thread); None without the library."""
    path = library_path(warn=False)
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    lib.fast_ops_peak_gflops.restype = ctypes.c_double
    lib.fast_ops_peak_gflops.argtypes = [ctypes.c_double]
    return float(lib.fast_ops_peak_gflops(seconds))
