"""Load a GLUE task from the Hub, a classic GLUE download folder, or the user's own files.

Whatever the source, the result has the Hub's column names and label ids, so models and metrics
never need to know where the data came from.
"""

import csv
import io
import json
import logging
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from datasets.exceptions import DatasetNotFoundError

from hfcompress.data.tasks import GlueTask, get_task
from hfcompress.errors import HfcompressError, UsageError

logger = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"

# Folder name the original GLUE download script used, and the column of each Hub field in its TSV files.
_CLASSIC_LAYOUT: dict[str, tuple[str, dict[str, str]]] = {
    "cola": ("CoLA", {"sentence": "sentence", "label": "label"}),
    "sst2": ("SST-2", {"sentence": "sentence", "label": "label"}),
    "mrpc": ("MRPC", {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
    "stsb": ("STS-B", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),
    "qqp": ("QQP", {"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
    "mnli": ("MNLI", {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}),
    "qnli": ("QNLI", {"question": "question", "sentence": "sentence", "label": "label"}),
    "rte": ("RTE", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
    "wnli": ("WNLI", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
}
# CoLA's files are the only ones without a header row.
_COLA_COLUMNS = ("source", "label", "original_label", "sentence")
_USER_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


def load_glue(
    task: str | GlueTask,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
) -> DatasetDict:
    """Load a GLUE task as splits "train" and the task's validation split(s), with Hub columns and label ids.

    Reads the classic GLUE layout from `data_dir` (the GLUE root or the task folder), or the user's
    csv/tsv/json files, or else downloads nyu-mll/glue from the Hub.
    """
    task = get_task(task)
    _check_max_samples("max_train_samples", max_train_samples)
    _check_max_samples("max_eval_samples", max_eval_samples)
    has_files = train_file is not None or validation_file is not None
    if data_dir is not None and has_files:
        raise UsageError("Pass either --data-dir or --train-file/--validation-file, not both.")
    if data_dir is not None:
        splits = _load_classic(task, Path(data_dir))
    elif has_files:
        splits = _load_user_files(task, train_file, validation_file)
    else:
        splits = _load_hub(task)
    for name, dataset in list(splits.items()):
        limit = max_train_samples if name == "train" else max_eval_samples
        if limit is not None and limit < len(dataset):
            splits[name] = dataset.shuffle(seed=seed).select(range(limit))
    return splits


def _check_max_samples(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{name} must be a positive whole number of rows, not {value!r}.")


def _features(task: GlueTask) -> Features:
    label = Value("float32") if task.is_regression else ClassLabel(names=list(task.label_names))
    return Features({**{column: Value("string") for column in task.text_columns}, "label": label})


def _to_dataset(task: GlueTask, rows: dict[str, list]) -> Dataset:
    return Dataset.from_dict(rows, features=_features(task))


def _load_hub(task: GlueTask) -> DatasetDict:
    try:
        loaded = load_dataset(HUB_DATASET, task.name)
    except (OSError, DatasetNotFoundError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HfcompressError(
            f"Could not download {HUB_DATASET}/{task.name} because the Hugging Face Hub is unreachable "
            f"({reason}); pass --data-dir pointing at a GLUE folder, or --train-file/--validation-file."
        ) from err
    columns = [*task.text_columns, "label"]
    return DatasetDict(
        {
            name: loaded[name].select_columns(columns).cast(_features(task))
            for name in ("train", *task.validation_splits)
            if name in loaded
        }
    )


def _label_id(task: GlueTask, value: object, where: str) -> int | float:
    """Map a label cell (an id, a label name, or an stsb score) to the Hub's label value."""
    if isinstance(value, str):
        value = value.strip()
    if task.is_regression:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"Label {value!r} in {where} is not a number; stsb labels are scores.") from None
    if isinstance(value, str) and value in task.label_names:
        return task.label_names.index(value)
    try:
        label = int(value) if isinstance(value, str) else value
    except ValueError:
        label = None
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < task.num_labels:
        raise UsageError(
            f"Unknown label {value!r} in {where}; expected one of {', '.join(task.label_names)} "
            f"or an id from 0 to {task.num_labels - 1}."
        )
    return label


def _columns_from_records(task: GlueTask, records: list[dict], path: Path) -> dict[str, list]:
    """Pick the Hub columns out of records that already use the Hub column names."""
    needed = [*task.text_columns, "label"]
    present = set(records[0]) if records else set()
    missing = [column for column in needed if column not in present]
    if missing:
        raise UsageError(
            f"File {path} has no column {', '.join(repr(c) for c in missing)}; "
            f"{task.name} files need columns {', '.join(needed)}."
        )
    rows: dict[str, list] = {column: [] for column in needed}
    for number, record in enumerate(records, start=1):
        for column in task.text_columns:
            text = record.get(column)
            if not isinstance(text, str):
                raise UsageError(f"Row {number} of {path} has no text in column {column!r}.")
            rows[column].append(text)
        rows["label"].append(_label_id(task, record.get("label"), f"column 'label' of {path}"))
    return rows


# --- classic GLUE download layout -------------------------------------------------------------------


def _classic_files(task: GlueTask) -> dict[str, str]:
    if task.name == "mnli":
        return {
            "train": "train.tsv",
            "validation_matched": "dev_matched.tsv",
            "validation_mismatched": "dev_mismatched.tsv",
        }
    return {"train": "train.tsv", "validation": "dev.tsv"}


def _find_task_folder(task: GlueTask, data_dir: Path) -> Path:
    folder_name = _CLASSIC_LAYOUT[task.name][0]
    if not data_dir.is_dir():
        raise UsageError(
            f"GLUE data directory {data_dir} does not exist; pass the GLUE root holding a {folder_name} "
            "folder, or the task folder itself."
        )
    # Accept the original folder names (SST-2, STS-B, CoLA) and plain task names (sst2, rte).
    for child in sorted(data_dir.iterdir()):
        if child.is_dir() and "".join(c for c in child.name.lower() if c.isalnum()) == task.name:
            return child
    if any((data_dir / file).is_file() for file in _classic_files(task).values()):
        return data_dir
    raise UsageError(
        f"GLUE data directory {data_dir} has no {folder_name} (or {task.name}) folder; pass the GLUE root "
        f"holding it, or the task folder with {' and '.join(sorted(set(_classic_files(task).values())))}."
    )


def _load_classic(task: GlueTask, data_dir: Path) -> DatasetDict:
    folder = _find_task_folder(task, data_dir)
    splits = DatasetDict()
    for split, file in _classic_files(task).items():
        if (folder / file).is_file():
            splits[split] = _to_dataset(task, _read_classic_tsv(task, folder / file))
    if not splits:
        expected = " or ".join(_classic_files(task).values())
        raise UsageError(f"GLUE task folder {folder} has no {expected} file.")
    return splits


def _read_classic_tsv(task: GlueTask, path: Path) -> dict[str, list]:
    columns = _CLASSIC_LAYOUT[task.name][1]
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(_COLA_COLUMNS) if task.name == "cola" else next(reader, [])
        missing = [name for name in columns.values() if name not in header]
        if missing:
            raise UsageError(
                f"File {path} has no column {', '.join(repr(c) for c in missing)}; "
                f"classic GLUE {task.name} files have columns {', '.join(columns.values())}."
            )
        positions = {hub: header.index(classic) for hub, classic in columns.items()}
        rows: dict[str, list] = {hub: [] for hub in columns}
        skipped = 0
        for line, fields in enumerate(reader, start=1 if task.name == "cola" else 2):
            # The real QQP and MNLI files hold a few broken lines; the GLUE loaders skipped them too.
            if len(fields) != len(header) or not fields[positions["label"]].strip():
                skipped += 1
                continue
            for hub, position in positions.items():
                if hub != "label":
                    rows[hub].append(fields[position])
            rows["label"].append(_label_id(task, fields[positions["label"]], f"line {line} of {path}"))
    if skipped:
        logger.warning("Skipped %d malformed lines in %s.", skipped, path)
    return rows


# --- the user's own csv / tsv / json files -----------------------------------------------------------


def _load_user_files(
    task: GlueTask,
    train_file: str | Path | None,
    validation_file: str | Path | None,
) -> DatasetDict:
    splits = DatasetDict()
    if train_file is not None:
        splits["train"] = _to_dataset(task, _read_user_file(task, Path(train_file)))
    if validation_file is not None:
        # A single file has to stand for MNLI's matched split.
        splits[task.validation_splits[0]] = _to_dataset(task, _read_user_file(task, Path(validation_file)))
    return splits


def _read_user_file(task: GlueTask, path: Path) -> dict[str, list]:
    suffix = path.suffix.lower()
    if suffix not in _USER_SUFFIXES:
        raise UsageError(f"Data file {path} must end in {', '.join(_USER_SUFFIXES)}.")
    if not path.is_file():
        raise UsageError(f"Data file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UsageError(f"Data file {path} is not UTF-8 text ({err.reason}).") from None
    if suffix in (".json", ".jsonl"):
        records = _json_records(text, path)
    else:
        # TSV follows GLUE (no quoting); CSV follows the usual spreadsheet quoting.
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
        records = list(csv.DictReader(io.StringIO(text, newline=""), **dialect))
    if not records:
        raise UsageError(f"Data file {path} holds no rows.")
    return _columns_from_records(task, records, path)


def _json_records(text: str, path: Path) -> list[dict]:
    """Read a JSON list of objects, a JSON object of columns, or JSON lines."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise UsageError(
                f"Data file {path} is not valid JSON or JSON lines ({err.msg}, line {err.lineno})."
            ) from None
    if isinstance(data, dict) and all(isinstance(value, list) for value in data.values()):
        lengths = {len(value) for value in data.values()}
        if len(lengths) > 1:
            raise UsageError(f"Data file {path} has columns of different lengths.")
        data = [dict(zip(data, values)) for values in zip(*data.values())]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(record, dict) for record in data):
        raise UsageError(f"Data file {path} must hold JSON objects, one per row.")
    return data
