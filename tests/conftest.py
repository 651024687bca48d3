"""Shared test set-up: run from the repo root, MindSpore on CPU; the longest modules first."""
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
def _pynative_unless_the_test_says_otherwise():
    """Every test starts in MindSpore's default PyNative mode and leaves it so: a GRAPH mode set by an
    earlier test or fixture (export.main sets the config's mode) makes single passes compile graphs."""
    import mindspore as ms
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


# Modules that run many entry points (minutes each), longest first: with `make test`'s two
# workers (pytest-xdist, one module per worker at a time) starting them first keeps both
# workers busy to the end.
_LONGEST_FIRST = ("test_distributed.py", "test_transfer.py", "test_configs_on_cpu.py", "test_train_eval.py",
                  "test_fault_tolerance.py", "test_demo.py", "test_fast_conv.py", "test_export.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))
