"""--task classification: any csv/tsv/json/jsonl/parquet data with named columns and string or number labels."""

import json

import pytest

from hfcompress.errors import UsageError
from hfcompress.tasks import ClassificationTask
from hfcompress.tasks.classification import classification_metrics, label_kind
from tests.conftest import run_cli, snapshot

ROWS = [("a wonderful , moving film", "good"), ("dull and far too long", "bad"), ("it was fine i guess", "meh")] * 8


def _csv(path, rows=ROWS, header="review,verdict"):
    lines = [header] + [f'"{text}",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_string_labels_get_sorted_ids_kept_in_id2label(tmp_path, tiny_teacher_dir):
    train, dev = _csv(tmp_path / "train.csv"), _csv(tmp_path / "dev.csv", ROWS[:9])
    out = tmp_path / "out"
    result = run_cli("finetune", tiny_teacher_dir, "--task", "classification", "--train-file", train,
                     "--validation-file", dev, "--text-columns", "review", "--label-column", "verdict",
                     "--num_train_epochs", "1", "--report_to", "none", "--latency-runs", "0",
                     "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "bad", "1": "good", "2": "meh"}
    report = json.loads((out / "compression.json").read_text())
    assert report["task"] == "classification" and set(report["result"]["metrics"]) == {"accuracy", "f1"}
    assert report["result"]["score"] == report["result"]["metrics"]["accuracy"]
    assert report["task_info"]["label_names"] == ["bad", "good", "meh"]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "nyu-mll/glue" not in card

    # evaluate reads the labels from the model's head; a label it does not know is refused.
    evaluated = run_cli("evaluate", out, "--task", "classification", "--validation-file", dev, "--text-columns",
                        "review", "--label-column", "verdict", "--latency-runs", "0")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    unknown = _csv(tmp_path / "unknown.csv", [("what", "awful")] * 3)
    refused = run_cli("evaluate", out, "--task", "classification", "--validation-file", unknown, "--text-columns",
                      "review", "--label-column", "verdict")  # fmt: skip
    assert refused.returncode == 2 and "label 'awful'" in refused.stderr


def test_missing_column_is_one_sentence_and_nothing_is_written(tmp_path, tiny_teacher_dir):
    train = _csv(tmp_path / "train.csv")
    before = snapshot(tmp_path)
    result = run_cli("finetune", tiny_teacher_dir, "--task", "classification", "--train-file", train,
                     "--validation-file", train, "--output-dir", tmp_path / "out")  # fmt: skip
    assert result.returncode == 2
    assert "has no column 'text'" in result.stderr and "--text-columns" in result.stderr
    assert snapshot(tmp_path) == before


def test_flags_of_another_task_kind_are_refused(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    result = run_cli("evaluate", tiny_teacher_dir, "--task", "sst2", "--data-dir", tiny_glue_dir, "--block-size", "64")
    assert result.returncode == 2 and "--block-size does not apply to --task sst2" in result.stderr


def test_files_of_every_format_load_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"t": text, "y": label} for text, label in ROWS[:6]]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.tsv").write_text("t\ty\n" + "\n".join(f"{r['t']}\t{r['y']}" for r in records))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet")
    loaded = []
    for suffix in ("jsonl", "json", "tsv", "parquet"):
        path = str(tmp_path / f"d.{suffix}")
        task = ClassificationTask(train_file=path, validation_file=path, text_columns="t", label_column="y")
        splits = task.prepare(task.load_splits(need_train=True))
        loaded.append((splits["validation"]["text_a"], splits["validation"]["label"], task.label_names))
    assert all(entry == loaded[0] for entry in loaded)
    assert loaded[0][2] == ("bad", "good", "meh")


def test_label_kinds_and_regression():
    assert label_kind([0, 1, "2"]) == "int"
    assert label_kind([0.5, 1.0]) == "float"
    assert label_kind(["pos", "neg"]) == "str"
    task = ClassificationTask(validation_file="x.csv")
    from datasets import Dataset, DatasetDict

    splits = task.prepare(DatasetDict({"validation": Dataset.from_dict({"text_a": ["a", "b"], "text_b": [None] * 2,
                                                                          "label": ["0.5", "3.25"]})}))  # fmt: skip
    assert task.is_regression and task.num_labels == 1 and splits["validation"]["label"] == [0.5, 3.25]


def test_metrics_by_hand():
    import numpy as np

    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    metrics = classification_metrics(logits, np.array([0, 1, 1, 1]), regression=False)
    assert metrics["accuracy"] == 0.75
    # class 0: precision 1/2, recall 1 -> F1 2/3; class 1: precision 1, recall 2/3 -> F1 0.8; macro 0.7333
    assert metrics["f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_needs_some_data():
    with pytest.raises(UsageError, match="needs data"):
        ClassificationTask()
