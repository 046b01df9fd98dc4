"""`--dataset NAME --dataset-config C` through `datasets.load_dataset`, on folders laid out as the Hub repos are.

The Hub is unreachable here, so each test writes a folder with the layout and README `configs:` block of the real
repository (`Salesforce/wikitext`: one folder of parquet shards per config; `stanfordnlp/imdb`: `plain_text/`
with a ClassLabel) and passes its path where a user passes the repo id: the same `load_dataset(name, config)`
call, the same split selection, joining and label handling, only the download is skipped.
"""

import json

import pytest

from tests.conftest import SHARED_TEXT, run_cli

WIKITEXT_README = """---
configs:
- config_name: wikitext-2-raw-v1
  data_files:
  - split: train
    path: wikitext-2-raw-v1/train-*
  - split: validation
    path: wikitext-2-raw-v1/validation-*
  - split: test
    path: wikitext-2-raw-v1/test-*
- config_name: wikitext-103-raw-v1
  data_files:
  - split: test
    path: wikitext-103-raw-v1/test-*
---
"""

IMDB_README = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
---
"""


@pytest.fixture(scope="module")
def wikitext_repo(tmp_path_factory):
    """Rows as the Hub's wikitext has them: one line each, blank lines kept as empty strings."""
    from datasets import Dataset

    repo = tmp_path_factory.mktemp("hub") / "wikitext"
    lines = (SHARED_TEXT / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    parts = {"train": lines[:150], "validation": lines[150:190], "test": lines[190:230]}
    for config in ("wikitext-2-raw-v1", "wikitext-103-raw-v1"):
        (repo / config).mkdir(parents=True)
        for split, rows in parts.items():
            Dataset.from_dict({"text": rows}).to_parquet(repo / config / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(WIKITEXT_README, encoding="utf-8")
    return repo, parts


def test_causal_lm_task_joins_the_chosen_split_as_the_guide_does(wikitext_repo):
    from hfcompress.tasks import CausalLMTask

    repo, parts = wikitext_repo
    task = CausalLMTask(dataset=str(repo), dataset_config="wikitext-2-raw-v1", validation_split="test")
    splits = task.load_splits(need_train=True)
    assert splits["validation"]["text"] == ["\n\n".join(parts["test"])]
    assert splits["train"]["text"] == parts["train"]


def test_evaluate_and_finetune_on_a_hub_layout_dataset(tmp_path, wikitext_repo, tiny_lm_dirs, lm_tokenizer):
    repo, parts = wikitext_repo
    data = ["--task", "causal-lm", "--dataset", repo, "--dataset-config", "wikitext-2-raw-v1", "--block-size", "32",
            "--latency-runs", "0"]  # fmt: skip
    out = tmp_path / "ft"
    result = run_cli("finetune", tiny_lm_dirs["llama"], *data, "--num_train_epochs", "1", "--report_to", "none",
                     "--per_device_train_batch_size", "8", "--learning_rate", "5e-3", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "compression.json").read_text())
    metrics = report["result"]["metrics"]
    joined = "\n\n".join(parts["validation"])  # the default --validation-split
    assert metrics["tokens"] == len(lm_tokenizer(joined)["input_ids"])
    assert report["result"]["score"] == metrics["perplexity"] < 512  # trained: better than uniform over 512 tokens

    output = tmp_path / "eval.json"
    result = run_cli("evaluate", out, *data, "--validation-split", "test", "--output-file", output)
    assert result.returncode == 0, result.stderr[-2000:]
    test_metrics = json.loads(output.read_text())["metrics"]
    assert test_metrics["tokens"] == len(lm_tokenizer("\n\n".join(parts["test"]))["input_ids"])


def test_a_missing_config_is_one_sentence(tmp_path, wikitext_repo, tiny_lm_dirs):
    repo, _ = wikitext_repo
    output = tmp_path / "eval.json"
    result = run_cli("evaluate", tiny_lm_dirs["llama"], "--task", "causal-lm", "--dataset", repo,
                     "--dataset-config", "wikitext-2-v9", "--output-file", output)  # fmt: skip
    assert result.returncode != 0 and not output.exists()
    message = result.stderr.strip().splitlines()[-1]
    assert "wikitext-2-v9" in message and "Traceback" not in result.stderr


def test_classification_takes_label_names_from_a_classlabel(tmp_path, tiny_teacher_dir):
    from datasets import ClassLabel, Dataset, Features, Value

    repo = tmp_path / "imdb"
    (repo / "plain_text").mkdir(parents=True)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    good = ["a wonderful , moving film", "superb acting and a clever plot", "i loved every minute"]
    bad = ["a dull , lifeless film", "clumsy acting and a boring plot", "i hated every minute"]
    rows = {"text": (good + bad) * 6, "label": ([1] * 3 + [0] * 3) * 6}
    for split in ("train", "test"):
        Dataset.from_dict(rows, features=features).to_parquet(repo / "plain_text" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(IMDB_README, encoding="utf-8")
    out = tmp_path / "clf"
    result = run_cli("finetune", tiny_teacher_dir, "--task", "classification", "--dataset", repo,
                     "--dataset-config", "plain_text", "--validation-split", "test", "--num_train_epochs", "1",
                     "--report_to", "none", "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    report = json.loads((out / "compression.json").read_text())
    assert report["task"] == "classification" and 0.0 <= report["result"]["metrics"]["accuracy"] <= 1.0
