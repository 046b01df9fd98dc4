import pytest

from hfcompress.data import GLUE_TASKS, GlueTask, get_task
from hfcompress.errors import UsageError


def test_all_nine_tasks_are_defined():
    assert sorted(GLUE_TASKS) == ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"]
    for name, task in GLUE_TASKS.items():
        assert task.name == name
        assert task.main_metric == task.metrics[0]


@pytest.mark.parametrize(
    ("name", "columns", "labels", "metrics"),
    [
        ("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
        ("sst2", ("sentence",), ("negative", "positive"), ("accuracy",)),
        ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy")),
        ("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy")),
        ("stsb", ("sentence1", "sentence2"), (), ("pearson", "spearmanr")),
        ("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",)),
        ("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",)),
        ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",)),
        ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",)),
    ],
)
def test_task_matches_the_hub_layout(name, columns, labels, metrics):
    task = get_task(name)
    assert task.text_columns == columns
    assert task.label_names == labels
    assert task.metrics == metrics


def test_regression_and_label_counts():
    assert get_task("stsb").is_regression
    assert get_task("stsb").num_labels == 1
    assert not get_task("sst2").is_regression
    assert get_task("sst2").num_labels == 2
    assert get_task("mnli").num_labels == 3


def test_validation_splits():
    assert get_task("mnli").validation_splits == ("validation_matched", "validation_mismatched")
    assert all(GLUE_TASKS[name].validation_splits == ("validation",) for name in GLUE_TASKS if name != "mnli")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        ("STS-B", "stsb"),
        ("sts_b", "stsb"),
        ("CoLA", "cola"),
        ("RTE", "rte"),
    ],
)
def test_get_task_accepts_aliases(alias, name):
    assert get_task(alias) is GLUE_TASKS[name]


def test_get_task_passes_a_task_through():
    task = GLUE_TASKS["qqp"]
    assert get_task(task) is task


def test_tasks_are_frozen():
    with pytest.raises(AttributeError):
        GLUE_TASKS["sst2"].name = "other"  # type: ignore[misc]
    assert isinstance(GLUE_TASKS["sst2"], GlueTask)


@pytest.mark.parametrize("name", ["imdb", "", "mnli-mm"])
def test_unknown_task_is_a_usage_error(name):
    with pytest.raises(UsageError) as info:
        get_task(name)
    message = str(info.value)
    assert f"Unknown GLUE task '{name}'" in message
    assert "cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli." in message
