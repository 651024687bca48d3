"""One accuracy rule for eval.py, infer_onnx.py and postprocess.py: the same logits, tied ones included,
give the same Top-1/Top-5 in all three."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore.train import Model

import infer_onnx
import postprocess
from helpers import fill_deterministic, make_image_folder
from src.crossentropysmooth import CrossEntropySmooth
from src.dataset import create_dataset, list_images
from src.exporter import export_network
from src.metrics import TopKAccuracy, eval_metrics, topk_correct
from src.shufflenetv1 import ShuffleNetV1
from tools.make_label_file import write_label_file

CLASSES = 7


def reference(logits, labels, k):
    """The documented rule, by a stable sort: descending logits, equal ones in class order."""
    order = np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :k]
    return int(sum(label in row for row, label in zip(order, labels)))


def test_the_rule_on_tied_logits():
    logits = np.array([[1, 1, 1, 1],     # all tied: only class 0 is first
                       [0, 2, 2, 0],     # 1 and 2 tied for first: 1 comes first
                       [3, 1, 1, 1],     # label 3 tied with 1 and 2, behind them
                       [0, 0, 0, 0]], np.float32)
    labels = np.array([0, 2, 3, 3])
    assert topk_correct(logits, labels, 1) == reference(logits, labels, 1) == 1
    assert topk_correct(logits, labels, 2) == reference(logits, labels, 2) == 2
    assert topk_correct(logits, labels, 3) == reference(logits, labels, 3) == 2
    assert topk_correct(logits, labels, 5) == 4  # k clipped to the 4 classes
    rng = np.random.RandomState(0)
    coarse = rng.randint(0, 3, (200, CLASSES)).astype(np.float32)  # many ties
    targets = rng.randint(0, CLASSES, 200)
    for k in (1, 2, 5):
        assert topk_correct(coarse, targets, k) == reference(coarse, targets, k)
    metric = TopKAccuracy(1)
    metric.update(ms.Tensor(coarse), ms.Tensor(targets.astype(np.int32)))
    assert metric.eval() == pytest.approx(reference(coarse, targets, 1) / 200)


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """A network whose classifier is zero (every logit 0.0 exactly: all classes tied) and a data set whose
    labels run over all 7 classes, so the three programs must agree on how a tie is broken."""
    root = tmp_path_factory.mktemp("tied")
    images = make_image_folder(str(root / "data"), per_class=tuple((f"c{i}", 1 + i % 3) for i in range(CLASSES)))
    net = fill_deterministic(ShuffleNetV1("0.5x", 3, num_classes=CLASSES), seed=2)
    for param in net.classifier.get_parameters():
        param.set_data(ms.Tensor(np.zeros(param.shape, np.float32)))
    net.set_train(False)
    labels = np.array([label for _, label in images])
    expected = (np.mean(labels == 0), np.mean(labels < 5))  # class 0 first, then 1..4
    return root, net, labels, expected


def test_eval_py_metrics_on_tied_logits(tied):
    root, net, labels, (top1, top5) = tied
    # what eval.py runs: Model.eval with the repo's metrics and loss
    model = Model(net, loss_fn=CrossEntropySmooth(num_classes=CLASSES, smooth_factor=0.1), metrics=eval_metrics())
    result = model.eval(
        create_dataset(str(root / "data"), do_train=False, batch_size=4, image_size=32), dataset_sink_mode=False)
    assert result["Top_1_Acc"] == pytest.approx(top1) and result["Top_5_Acc"] == pytest.approx(top5)
    assert 0 < top1 < top5 < 1


def test_infer_onnx_on_tied_logits(tied):
    root, net, _, (top1, top5) = tied
    onnx_path = export_network(net, str(root / "tied"), "ONNX", batch_size=4, image_size=32)
    result = infer_onnx.evaluate_onnx(onnx_path, str(root / "data"))
    assert result["Top_1_Acc"] == pytest.approx(top1) and result["Top_5_Acc"] == pytest.approx(top5)


def test_postprocess_on_tied_logits(tied):
    root, _, _, (top1, top5) = tied
    write_label_file(str(root / "data"), str(root / "labels.txt"))
    os.makedirs(root / "result_Files", exist_ok=True)
    for img_id, _, _ in list_images(str(root / "data")):  # what the 310 program writes: the logits, all 0.0
        np.zeros(CLASSES, np.float32).tofile(root / "result_Files" / f"{img_id}_0.bin")
    got1, got5, images, classes = postprocess.score_results(str(root / "result_Files"), str(root / "labels.txt"))
    assert (images, classes) == (len(list_images(str(root / "data"))), CLASSES)
    assert got1 == pytest.approx(top1) and got5 == pytest.approx(top5)
