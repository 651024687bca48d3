"""Shared test set-up: run from the repo root, MindSpore on CPU."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session", autouse=True)
def _compile_cache(tmp_path_factory):
    """A folder for MindSpore's compile cache of this session (see helpers.run_entry)."""
    os.environ["SHUFFLENET_TEST_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("compile_cache"))
    yield


@pytest.fixture(scope="session", autouse=True)
def _mindspore_cpu():
    import mindspore as ms
    ms.set_device("CPU")
    yield


@pytest.fixture(autouse=True)
def _keep_execution_mode():
    """A test that switches to GRAPH (or PYNATIVE) mode does not leave it to the next one."""
    import mindspore as ms
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)
