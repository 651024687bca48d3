"""ascend310_infer/ compiles and links against the C++ inference API of MindSpore Lite 2.0.

No Ascend 310 here, so the program is built against the headers and libraries of the
``mindspore-lite==2.0.0`` cp37 wheel (the C++ API lives in its
libmindspore-extendrt_python.so), fetched once with ``pip download`` into a cache
(``$SHUFFLENETV1_CACHE``, default ~/.cache/shufflenetv1_ms) that later runs reuse. The
test is skipped, with pip's reason, only where the package registry cannot be reached.

Running a model is not possible: Lite 2.0 reads MINDIR up to version 1 and MindSpore 2.10
writes version 3. The program is run up to that point, which shows that it starts, reads
its options, and hands the file to the library's Model::Build.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from export import export_network
from helpers import fill_deterministic, make_image_folder
from src.shufflenetv1 import ShuffleNetV1
from tools.make_label_file import write_label_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SHUFFLENETV1_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "shufflenetv1_ms")
WHEEL = "mindspore_lite-2.0.0-cp37-cp37m-manylinux1_x86_64.whl"
WHEEL_SHA256 = "199cd0605cc985b88eddb273db9dfe9000a585ba10ca2292b6b36ebfff07b3ec"
PIP_ARGS = ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.7", "--platform",
            "manylinux1_x86_64", "mindspore-lite==2.0.0", "--retries", "2", "--timeout", "60"]
# pip's words for "the index could not be reached" (as opposed to any other failure).
UNREACHABLE = ("NewConnectionError", "ConnectTimeoutError", "Max retries exceeded", "Temporary failure in name "
               "resolution", "Name or service not known", "Network is unreachable", "Connection refused",
               "ProxyError", "ReadTimeoutError", "Could not fetch URL", "SSLError")

pytestmark = pytest.mark.slow


def _sha256(path):
    import hashlib  # pylint: disable=import-outside-toplevel
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel():
    """Path of the cached wheel, downloading it first if needed (skips only when offline)."""
    wheel_dir = os.path.join(CACHE, "wheels")
    path = os.path.join(wheel_dir, WHEEL)
    if os.path.isfile(path) and _sha256(path) == WHEEL_SHA256:
        return path
    temp = os.path.join(CACHE, f"download-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    os.makedirs(temp)
    try:
        done = subprocess.run([sys.executable, "-m", "pip", *PIP_ARGS, "-d", temp], capture_output=True,
                              text=True, timeout=1800)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            unreachable = [line.strip() for line in output.splitlines() if any(m in line for m in UNREACHABLE)]
            if unreachable:
                pytest.skip(f"the package registry cannot be reached to fetch mindspore-lite==2.0.0 "
                            f"({unreachable[-1][:300]})")
            pytest.fail(f"pip download of mindspore-lite==2.0.0 failed:\n{output[-3000:]}")
        downloaded = os.path.join(temp, WHEEL)
        assert os.path.isfile(downloaded), f"pip did not write {WHEEL}: {os.listdir(temp)}"
        digest = _sha256(downloaded)
        assert digest == WHEEL_SHA256, f"{WHEEL} has sha256 {digest}, expected {WHEEL_SHA256}"
        os.makedirs(wheel_dir, exist_ok=True)
        os.replace(downloaded, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return path


def unpacked_sdk():
    """Folder with include/api/*.h and lib/*.so of the wheel, unpacked once into the cache."""
    target = os.path.join(CACHE, "mindspore_lite-2.0.0")
    sdk = os.path.join(target, "mindspore_lite")
    if os.path.isfile(os.path.join(target, ".complete")):
        return sdk
    wheel = fetch_wheel()
    temp = f"{target}.unpacking-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist()
                   if m.startswith(("mindspore_lite/include/", "mindspore_lite/lib/")) and not m.endswith("/")]
        archive.extractall(temp, members)
    with open(os.path.join(temp, ".complete"), "w", encoding="utf-8") as fh:
        fh.write(WHEEL_SHA256 + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temp, target)
    return sdk


@pytest.fixture(scope="module")
def sdk():
    for tool in ("cmake", "g++", "readelf", "ldd"):
        assert shutil.which(tool), f"{tool} is needed to build ascend310_infer (apt-get install -y cmake g++)"
    return unpacked_sdk()


@pytest.fixture(scope="module")
def built(sdk, tmp_path_factory):
    """(program path, build output) of ascend310_infer/build.sh in a fresh build folder."""
    build_dir = tmp_path_factory.mktemp("build310")
    env = dict(os.environ, BUILD_DIR=str(build_dir), MINDSPORE_PATH=sdk)
    done = subprocess.run(["bash", os.path.join(ROOT, "ascend310_infer", "build.sh")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, f"build failed:\n{(done.stdout + done.stderr)[-4000:]}"
    program = build_dir / "main"
    assert program.is_file() and os.access(program, os.X_OK)
    return str(program), done.stdout + done.stderr


def _run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def test_compiles_without_warnings_and_links_with_rpath(built, sdk):
    program, log = built
    ours = [line for line in log.splitlines() if "warning:" in line and "ascend310_infer" in line]
    assert not ours, "\n".join(ours)
    dynamic = _run(["readelf", "-d", program]).stdout
    assert "libmindspore-extendrt_python.so" in dynamic
    # RPATH (not RUNPATH) so that the library's own dependencies are found too.
    assert f"Library rpath: [{os.path.join(sdk, 'lib')}" in dynamic and "RUNPATH" not in dynamic
    libraries = _run(["ldd", program]).stdout
    assert "not found" not in libraries, libraries
    assert f"{os.path.join(sdk, 'lib')}/libmindspore_core.so" in libraries


def test_program_options(built, tmp_path):
    program, _ = built
    done = _run([program, "--help"])
    assert done.returncode == 0 and done.stdout.startswith("Usage: ") and "--device_type" in done.stdout
    done = _run([program])
    assert done.returncode == 2 and "error: missing --mindir_path" in done.stderr and "Usage: " in done.stderr
    done = _run([program, "--mindir_path=a.mindir", "--input_path", "x", "--batch=2"])
    assert done.returncode == 2 and "unknown option --batch" in done.stderr
    done = _run([program, "--mindir_path=a.mindir", "--input_path=x", "--device_type=GPU"])
    assert done.returncode == 2 and "--device_type=GPU is not supported; choose Ascend310 or CPU" in done.stderr
    done = _run([program, "--mindir_path=a.mindir", "--input_path=x", "--device_id=-1"])
    assert done.returncode == 2 and "--device_id=-1 is not valid" in done.stderr
    done = _run([program, f"--mindir_path={tmp_path / 'a.mindir'}", f"--input_path={tmp_path}"])
    assert done.returncode == 1 and "a.mindir is not a file" in done.stderr
    (tmp_path / "a.mindir").write_bytes(b"x")
    done = _run([program, f"--mindir_path={tmp_path / 'a.mindir'}", f"--input_path={tmp_path}"])
    assert done.returncode == 1 and "no .bin files in" in done.stderr


def test_build_script_errors(tmp_path):
    build = os.path.join(ROOT, "ascend310_infer", "build.sh")
    done = _run(["bash", build, "a", "b"])
    assert done.returncode == 2 and done.stderr.startswith("Usage: bash ")
    done = _run(["bash", build, str(tmp_path)], env=dict(os.environ, BUILD_DIR=str(tmp_path / "b")))
    assert done.returncode == 1 and f"MINDSPORE_PATH={tmp_path} has no include/api/model.h" in done.stderr
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(batch-1 MINDIR, image folder, label file, folder of input bins) at 32 px."""
    import preprocess  # pylint: disable=import-outside-toplevel
    root = tmp_path_factory.mktemp("inputs310")
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=5), seed=0)
    net.set_train(False)
    mindir = export_network(net, str(root / "shufflenetv1_bs1"), "MINDIR", batch_size=1, image_size=32)
    make_image_folder(str(root / "data"))
    write_label_file(str(root / "data"), str(root / "labels.txt"))
    preprocess.preprocess_folder(str(root / "data"), str(root / "bins"), 32)
    return mindir, str(root / "data"), str(root / "labels.txt"), str(root / "bins")


def test_program_hands_the_mindir_to_the_library(built, inputs, tmp_path):
    program, _ = built
    mindir, _, _, bins = inputs
    done = _run([program, f"--mindir_path={mindir}", f"--input_path={bins}", f"--result_path={tmp_path / 'out'}",
                 "--device_type=CPU"])
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert f"error: cannot build the model from {mindir} on CPU" in done.stderr
    # The library itself read the file and refused its version: the limit of this check.
    assert "maximum mind ir version: 1" in output and "mind ir version: 3" in output
    assert (tmp_path / "out").is_dir() and not list((tmp_path / "out").iterdir())


def test_run_infer_310_script(built, inputs, sdk, tmp_path):
    program, _ = built
    mindir, data, labels, _ = inputs
    script = os.path.join(ROOT, "scripts", "run_infer_310.sh")
    env = dict(os.environ, PYTHON=sys.executable, BUILD_DIR=os.path.dirname(program), MINDSPORE_PATH=sdk,
               DEVICE_TYPE="CPU", IMAGE_SIZE="32", OUTPUT_DIR=str(tmp_path / "run"))
    done = _run(["bash", script, mindir, data], env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: bash scripts/run_infer_310.sh MINDIR_PATH DATA_PATH LABEL_FILE DEVICE_ID")
    done = _run(["bash", script, mindir, data, "no_labels.txt", "0"], env=env, cwd=str(tmp_path))
    assert done.returncode == 2 and f"error: LABEL_FILE={tmp_path / 'no_labels.txt'} is not a file" in done.stderr
    assert "tools/make_label_file.py" in done.stderr
    done = _run(["bash", script, mindir, str(tmp_path / "nodata"), labels, "0"], env=env)
    assert done.returncode == 2 and "is not a directory" in done.stderr
    done = _run(["bash", script, mindir, data, labels, "zero"], env=env)
    assert done.returncode == 2 and "DEVICE_ID=zero is not a device number" in done.stderr
    # The whole chain: build and preprocess succeed; inference stops at Lite 2.0's MINDIR version check.
    done = _run(["bash", script, mindir, data, labels, "0"], env=env)
    assert "1/4 build" in done.stdout and "2/4 preprocess" in done.stdout and "3/4 infer" in done.stdout
    assert done.returncode == 1 and "error: inference failed" in done.stderr
    assert "mind ir version" in done.stderr
    written = sorted(n for n in os.listdir(tmp_path / "run" / "preprocess_Result") if n.endswith(".bin"))
    assert len(written) == 7 and written[0] == "ant_0.bin"
    assert all(os.path.getsize(tmp_path / "run" / "preprocess_Result" / name) == 3 * 32 * 32 * 4
               for name in written)
    assert np.isfinite(np.fromfile(tmp_path / "run" / "preprocess_Result" / written[0], np.float32)).all()
    # a second run into the same OUTPUT_DIR would replace these results: refused, nothing touched
    before = sorted(os.listdir(tmp_path / "run" / "preprocess_Result"))
    again = _run(["bash", script, mindir, data, labels, "0"], env=env)
    assert again.returncode == 2 and f"OUTPUT_DIR={tmp_path / 'run'} already holds the results of a run" in \
        again.stderr
    assert sorted(os.listdir(tmp_path / "run" / "preprocess_Result")) == before
