"""Device and ModelArts adapters, and the MindSpore Hub entry."""
import pytest

from mindspore_hub_conf import create_network
from src.model_utils import device_adapter
from src.model_utils.config import Config
from src.model_utils.errors import UsageError, run_reporting_errors
from src.model_utils.moxing_adapter import moxing_wrapper
from src.shufflenetv1 import ShuffleNetV1


def test_device_adapter_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DEVICE_ID", "3")
    monkeypatch.setenv("RANK_ID", "5")
    monkeypatch.setenv("RANK_SIZE", "8")
    monkeypatch.delenv("JOB_ID", raising=False)
    assert (device_adapter.get_device_id(), device_adapter.get_rank_id(), device_adapter.get_device_num()) == (3, 5, 8)
    assert device_adapter.get_job_id() == "default"
    monkeypatch.setenv("RANK_SIZE", "eight")
    with pytest.raises(ValueError, match="RANK_SIZE='eight' must be an integer"):
        device_adapter.get_device_num()


def test_moxing_wrapper_is_transparent_off_modelarts():
    calls = []
    wrapped = moxing_wrapper(Config(enable_modelarts=False), "train")(lambda: calls.append(1) or "done")
    assert wrapped() == "done" and calls == [1]
    # (on ModelArts, with a stand-in moxing: tests/test_modelarts.py)


def test_hub_create_network():
    net = create_network("shufflenetv1", model_size="0.5x", group=8, num_classes=4)
    assert isinstance(net, ShuffleNetV1) and net.classifier.weight.shape == (4, 768)
    with pytest.raises(ValueError, match="unknown network name 'resnet50'"):
        create_network("resnet50")


def test_run_reporting_errors(capsys):
    assert run_reporting_errors(lambda a, b=0: a + b, 1, b=2) == (0, 3)

    def bad_value():
        raise ValueError("checkpoint 'x.ckpt' does not fit this network")
    assert run_reporting_errors(bad_value) == (1, None)  # an input unusable during the work: exit 1
    assert capsys.readouterr().err == "error: checkpoint 'x.ckpt' does not fit this network\n"

    def bad_argument():
        raise UsageError("--epoch_size must be at least 1, got 0")
    assert run_reporting_errors(bad_argument) == (2, None)  # a bad argument, before any work: exit 2
    assert capsys.readouterr().err == "error: --epoch_size must be at least 1, got 0\n"

    def bad_image():  # what MindSpore's data engine raises for a file it cannot decode
        raise RuntimeError("Exception thrown from dataset pipeline. Refer to 'Dataset Pipeline Error Message'.\n"
                           "[ERROR] Decode: image decode failed. Invalid image file: /data/cat/broken.jpg")
    assert run_reporting_errors(bad_image) == (1, None)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pipeline" in err

    def bug():
        raise RuntimeError("an internal failure, not the user's")
    with pytest.raises(RuntimeError, match="internal failure"):
        run_reporting_errors(bug)
    with pytest.raises(KeyError):
        run_reporting_errors(lambda: {}["missing"])


def test_use_device_explains_a_missing_backend(monkeypatch):
    import mindspore as ms

    def refuse(target, device_id=None):
        raise RuntimeError(f"Unsupported device target {target}. This process only supports one of the ['CPU'].\n"
                           "Please check whether the GPU environment is installed")
    monkeypatch.setattr(ms, "set_device", refuse)
    with pytest.raises(ValueError, match=r"device_target=GPU cannot be used with this MindSpore installation "
                                         r"\(Unsupported device target GPU\. .*\); install the MindSpore package "
                                         r"for GPU or pass --device_target CPU"):
        device_adapter.use_device("GPU", 0)
