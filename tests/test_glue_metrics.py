import math

import numpy as np
import pytest

from hfcompress.data import compute_glue_metrics, get_task, predictions_from_logits


def test_cola_matthews_correlation():
    # refs  1 1 1 0 0 1
    # preds 1 0 1 0 1 1  ->  TP=3, FN=1, TN=1, FP=1
    # MCC = (3*1 - 1*1) / sqrt((3+1)(3+1)(1+1)(1+1)) = 2 / 8 = 0.25
    result = compute_glue_metrics("cola", [1, 0, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1])
    assert result == pytest.approx({"matthews_correlation": 0.25})
    assert type(result["matthews_correlation"]) is float


def test_sst2_accuracy():
    assert compute_glue_metrics("sst2", [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]) == pytest.approx({"accuracy": 0.6})


def test_mrpc_f1_and_accuracy():
    # refs  1 1 0 0 1 0 1 1
    # preds 1 0 0 1 1 0 1 1  ->  TP=4, FN=1, FP=1, TN=2
    # precision = recall = 4/5, F1 = 0.8, accuracy = 6/8
    result = compute_glue_metrics("mrpc", [1, 0, 0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0, 1, 1])
    assert list(result) == ["f1", "accuracy"]
    assert result == pytest.approx({"f1": 0.8, "accuracy": 0.75})


def test_qqp_f1_is_for_the_positive_class():
    # refs 0 0 0 1, preds 0 1 0 1 -> TP=1, FP=1, FN=0: precision 1/2, recall 1, F1 = 2/3
    result = compute_glue_metrics("qqp", [0, 1, 0, 1], [0, 0, 0, 1])
    assert result == pytest.approx({"f1": 2 / 3, "accuracy": 0.75})


def test_stsb_pearson_and_spearman():
    # x = 1 2 3 4, y = 2 4 6 9: dx = -1.5 -.5 .5 1.5, dy = -3.25 -1.25 .75 3.75
    # sum dx*dy = 11.5, sum dx^2 = 5, sum dy^2 = 26.75 -> r = 11.5 / sqrt(133.75); y is monotone -> rho = 1
    result = compute_glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0])
    assert list(result) == ["pearson", "spearmanr"]
    assert result == pytest.approx({"pearson": 11.5 / math.sqrt(133.75), "spearmanr": 1.0})


def test_stsb_rank_correlation():
    # y = 1 3 2 4 are ranks already: d = 0 -1 1 0, rho = 1 - 6*2 / (4*15) = 0.8, and pearson equals it
    result = compute_glue_metrics("stsb", np.array([[1.0], [2.0], [3.0], [4.0]]), [1.0, 3.0, 2.0, 4.0])
    assert result == pytest.approx({"pearson": 0.8, "spearmanr": 0.8})


def test_mnli_accuracy_from_logits():
    logits = np.array([[2.0, 0.1, 0.3], [0.0, 1.0, -1.0], [0.1, 0.2, 0.9], [3.0, 0.0, 0.0]])
    # argmax: 0 1 2 0
    assert compute_glue_metrics("mnli", logits, [0, 1, 1, 2]) == pytest.approx({"accuracy": 0.5})


@pytest.mark.parametrize("task", ["qnli", "rte", "wnli"])
def test_pair_accuracy(task):
    assert compute_glue_metrics(task, [0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx({"accuracy": 0.75})


def test_binary_logits_are_argmaxed():
    logits = [[0.2, 0.8], [0.9, 0.1], [-1.0, 1.0]]
    assert predictions_from_logits("sst2", logits).tolist() == [1, 0, 1]
    assert compute_glue_metrics("mrpc", logits, [1, 0, 0]) == pytest.approx({"f1": 2 / 3, "accuracy": 2 / 3})


def test_predictions_from_logits_shapes():
    assert predictions_from_logits("stsb", [[0.5], [1.5]]).tolist() == [0.5, 1.5]
    assert predictions_from_logits("stsb", [0.5, 1.5]).dtype == np.float64
    assert predictions_from_logits(get_task("cola"), np.array([1.0, 0.0])).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        predictions_from_logits("mnli", [[0.1, 0.2]])
    with pytest.raises(ValueError, match="whole class ids"):
        predictions_from_logits("sst2", [0.2, 0.7])
    with pytest.raises(ValueError, match="stsb"):
        predictions_from_logits("stsb", [[0.1, 0.2]])


def test_constant_predictions_score_zero_not_nan():
    assert compute_glue_metrics("cola", [1, 1, 1, 1], [0, 1, 0, 1]) == {"matthews_correlation": 0.0}
    assert compute_glue_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == {
        "pearson": 0.0,
        "spearmanr": 0.0,
    }
    assert compute_glue_metrics("stsb", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == {
        "pearson": 0.0,
        "spearmanr": 0.0,
    }
    assert compute_glue_metrics("stsb", [1.0], [2.0]) == {"pearson": 0.0, "spearmanr": 0.0}


def test_no_positive_predictions_give_zero_f1():
    assert compute_glue_metrics("qqp", [0, 0, 0], [0, 0, 1]) == pytest.approx({"f1": 0.0, "accuracy": 2 / 3})
    assert compute_glue_metrics("qqp", [0, 0], [0, 0]) == pytest.approx({"f1": 0.0, "accuracy": 1.0})


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(ValueError, match="3 predictions"):
        compute_glue_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        compute_glue_metrics("sst2", [], [])


def test_accepts_a_task_object_and_numpy_inputs():
    task = get_task("rte")
    result = compute_glue_metrics(task, np.array([0, 1]), np.array([0, 0]))
    assert result == {"accuracy": 0.5}
    assert type(result["accuracy"]) is float
