"""ModelArts (enable_modelarts): the data is copied in and read there, checkpoints, logs and exports are
written under output_path and copied back to train_url (after a failure too), and without moxing the run
ends with one error line. ``moxing`` is the stand-in of tests/stand_ins, which copies local folders
("obs://bucket/x" is $MOXING_OBS_ROOT/bucket/x) and records every copy."""
import os
import uuid

import pytest

from helpers import ROOT, read_jsonl, run_entry
from src.synthetic import make_shapes_dataset

pytestmark = pytest.mark.slow
STAND_INS = os.path.join(ROOT, "tests", "stand_ins")
SMALL = ["--device_target", "CPU", "--mode", "PYNATIVE", "--model_size", "0.5x", "--num_classes", "3",
         "--image_size", "32", "--batch_size", "6", "--epoch_size", "1", "--warmup_epochs", "0",
         "--num_parallel_workers", "1"]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A bucket holding an ImageNet-style data set (train/ and val/), and the job's local /cache."""
    root = tmp_path_factory.mktemp("modelarts")
    make_shapes_dataset(str(root / "obs" / "bucket" / "imagenet"), num_classes=3, train_per_class=4,
                        val_per_class=2, image_size=40)
    return root


def on_modelarts(cloud, script, args, cwd, check=True, moxing=True):
    env = {"MOXING_OBS_ROOT": str(cloud / "obs"), "MOXING_LOG": str(cloud / "moxing.log"),
           "JOB_ID": uuid.uuid4().hex}  # one copy per job and machine: a new job each run
    if moxing:
        env["PYTHONPATH"] = os.pathsep.join([STAND_INS, os.environ.get("PYTHONPATH", "")])
    local = ["--enable_modelarts", "True", "--data_path", str(cloud / "cache" / "data"), "--output_path",
             str(cwd / "cache" / "train"), "--load_path", str(cwd / "cache" / "checkpoint")]
    return run_entry(script, local + args, cwd, check=check, env=env)


def copies(cloud):
    return [(c["op"], c["src"], c["dst"]) for c in read_jsonl(cloud / "moxing.log")]


@pytest.fixture(scope="module")
def trained(cloud, tmp_path_factory):
    work = tmp_path_factory.mktemp("train_job")
    proc = on_modelarts(cloud, "train.py", SMALL + ["--data_url", "obs://bucket/imagenet", "--train_url",
                                                    "obs://bucket/job1", "--train_dataset_path", "train",
                                                    "--eval_dataset_path", "val", "--eval_interval", "1"], work)
    return work, proc


def test_training_reads_the_copied_data_and_sends_everything_back(cloud, trained):
    work, proc = trained
    data, output = cloud / "cache" / "data", work / "cache" / "train"
    assert ("copy_parallel", "obs://bucket/imagenet", str(data)) in copies(cloud)
    assert ("copy_parallel", str(output), "obs://bucket/job1") in copies(cloud)
    assert f"ModelArts: train_dataset_path={data / 'train'} (was 'train')" in proc.stdout
    assert f"ModelArts: save_ckpt_path={output / 'output'} (was './output')" in proc.stdout
    sent = cloud / "obs" / "bucket" / "job1" / "output"
    for name in ("shufflenetv1-1_2.ckpt", "shufflenetv1_best.ckpt", "train_log.jsonl", "config.yaml", "curves.png"):
        assert (sent / name).is_file(), name
    assert not os.path.exists(work / "output"), "checkpoints went to the working folder, not output_path"


def test_evaluation_and_export_use_the_copied_checkpoint(cloud, trained, tmp_path):
    checkpoint = "obs://bucket/job1/output/shufflenetv1-1_2.ckpt"
    evaluated = on_modelarts(cloud, "eval.py", ["--device_target", "CPU", "--mode", "PYNATIVE", "--image_size", "32",
                                                "--data_url", "obs://bucket/imagenet", "--checkpoint_url", checkpoint,
                                                "--eval_dataset_path", "val", "--train_url", "obs://bucket/eval1"],
                             tmp_path)
    local_ckpt = tmp_path / "cache" / "checkpoint" / "shufflenetv1-1_2.ckpt"
    assert ("copy", checkpoint, str(local_ckpt)) in copies(cloud)
    assert f"ModelArts: ckpt_path={local_ckpt}" in evaluated.stdout and "Top_1_Acc" in evaluated.stdout
    log = cloud / "obs" / "bucket" / "eval1" / "eval_log.txt"
    assert log.read_text().startswith("result:{'Loss'")
    (tmp_path / "export").mkdir()
    exported = on_modelarts(cloud, "export.py", ["--device_target", "CPU", "--checkpoint_url", checkpoint,
                                                 "--file_format", "ONNX", "--batch_size", "1", "--image_size", "32",
                                                 "--file_name", "net", "--train_url", "obs://bucket/export1"],
                            tmp_path / "export")
    assert (cloud / "obs" / "bucket" / "export1" / "net.onnx").stat().st_size > 10_000, exported.stdout
    assert not (tmp_path / "export" / "net.onnx").exists()  # written under output_path, not the working folder


def test_a_failed_run_still_sends_what_it_wrote(cloud, tmp_path):
    proc = on_modelarts(cloud, "train.py", SMALL + ["--data_url", "obs://bucket/imagenet", "--train_url",
                                                    "obs://bucket/job2", "--train_dataset_path", "no_such_folder"],
                        tmp_path, check=False)
    assert proc.returncode == 2 and "train_dataset_path=" in proc.stderr and "is not a directory" in proc.stderr
    assert ("copy_parallel", str(tmp_path / "cache" / "train"), "obs://bucket/job2") in copies(cloud)


def test_without_moxing_one_error_line(cloud, tmp_path):
    proc = on_modelarts(cloud, "train.py", SMALL + ["--data_url", "obs://bucket/imagenet"], tmp_path, check=False,
                        moxing=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: enable_modelarts is True but the 'moxing' package is not installed; it "
                                   "exists only on Huawei ModelArts. Run with --enable_modelarts False on other "
                                   "machines")
