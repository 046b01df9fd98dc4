"""Load a GLUE task from the Hub, a classic GLUE download folder, or the user's own files.

Whatever the source, the result has the Hub's column names and label ids, so models and metrics
never need to know where the data came from.
"""

import codecs
import csv
import json
import logging
from collections.abc import Iterable, Iterator
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
    train: bool = True,
) -> DatasetDict:
    """Load a GLUE task as splits "train" and the task's validation split(s), with Hub columns and label ids.

    Reads the classic GLUE layout from `data_dir` (the GLUE root or the task folder), or the user's
    csv/tsv/json files, or else downloads nyu-mll/glue from the Hub. `train=False` leaves the train split out
    without reading its file (evaluation needs none, and a broken train file must not stop it).
    """
    task = get_task(task)
    _check_max_samples("max_train_samples", max_train_samples)
    _check_max_samples("max_eval_samples", max_eval_samples)
    has_files = train_file is not None or validation_file is not None
    if data_dir is not None and has_files:
        raise UsageError("Pass either --data-dir or --train-file/--validation-file, not both.")
    if data_dir is not None:
        splits = _load_classic(task, Path(data_dir), train)
    elif has_files:
        splits = _load_user_files(task, train_file if train else None, validation_file)
    else:
        splits = _load_hub(task)
        if not train:
            splits.pop("train", None)
    for name, dataset in list(splits.items()):
        limit = max_train_samples if name == "train" else max_eval_samples
        if limit is not None and limit < len(dataset):
            splits[name] = dataset.shuffle(seed=seed).select(range(limit))
    return splits


def _check_max_samples(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{name} must be a positive whole number of rows, not {value!r}.")


def text_lines(path: Path, what: str = "Data file", encoding: str = "utf-8-sig") -> Iterator[str]:
    """The lines of a UTF-8 file as stored, line endings kept (utf-8-sig: without a byte-order mark), read one at
    a time; a byte that is not UTF-8 is refused in one sentence naming the file and its line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and encoding == "utf-8-sig":
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UsageError(
                    f"{what} {path} is not UTF-8 text: line {number} holds the byte 0x{raw[err.start]:02x} "
                    f"({err.reason}); save it as UTF-8."
                ) from None


def read_text(path: Path, what: str = "Data file", encoding: str = "utf-8-sig") -> str:
    """The whole text of a UTF-8 file, checked as `text_lines` does."""
    return "".join(text_lines(path, what, encoding))


def read_rows(
    lines: Iterable[str], path: Path, delimiter: str, ragged: list[int], header: list[str] | None = None
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows) of csv or tsv lines, TSV without quoting as GLUE writes it; rows are (line, fields) with the
    line each starts on, read as they are iterated.

    Rows with another number of fields than the header are left out and their lines added to `ragged`, for
    `report_skipped` once the rows are read. `header` is given for files without a header row (CoLA).
    """
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if delimiter == "\t" else {"delimiter": delimiter}
    reader = csv.reader(lines, **dialect)
    try:
        header = next(reader, []) if header is None else header
    except csv.Error as err:
        raise UsageError(f"File {path} has a header line that is not valid {_kind(delimiter)} ({err}).") from None

    def rows():
        start = reader.line_num + 1
        try:
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue  # a blank line
                if len(fields) != len(header):
                    ragged.append(line)
                else:
                    yield line, fields
        except csv.Error as err:
            raise UsageError(f"Line {start} of {path} is not valid {_kind(delimiter)} ({err}).") from None

    return header, rows()


def _kind(delimiter: str) -> str:
    return "TSV" if delimiter == "\t" else "CSV"


def ragged_reason(header: list[str], delimiter: str) -> str:
    """How `report_skipped` names rows of the wrong width."""
    kind = "tab-separated " if delimiter == "\t" else ""
    return f"not {len(header)} {kind}fields"


def report_skipped(path: Path, skipped: dict[str, list[int]], kept: int) -> None:
    """Warn once about rows of `path` skipped as malformed ({reason: line numbers}); refuse a file left empty."""
    skipped = {reason: lines for reason, lines in skipped.items() if lines}
    total = sum(len(lines) for lines in skipped.values())
    if not total:
        return
    why = "; ".join(f"{reason} on {_line_numbers(lines)}" for reason, lines in skipped.items())
    if not kept:
        raise UsageError(f"File {path} has no usable rows: all {total} are malformed ({why}).")
    logger.warning("Skipped %d malformed row%s of %s (%s).", total, "" if total == 1 else "s", path, why)


def _line_numbers(lines: list[int], shown: int = 5) -> str:
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:shown]))}{more}"


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
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(
            f"GLUE data directory {data_dir} is a file, not a folder; pass the GLUE root holding a {folder_name} "
            "folder, or the task folder itself."
        )
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


def _load_classic(task: GlueTask, data_dir: Path, train: bool = True) -> DatasetDict:
    folder = _find_task_folder(task, data_dir)
    splits = DatasetDict()
    for split, file in _classic_files(task).items():
        if (folder / file).is_file() and (train or split != "train"):
            splits[split] = _to_dataset(task, _read_classic_tsv(task, folder / file))
    if not splits:
        expected = " or ".join(_classic_files(task).values())
        raise UsageError(f"GLUE task folder {folder} has no {expected} file.")
    return splits


def _read_classic_tsv(task: GlueTask, path: Path) -> dict[str, list]:
    columns = _CLASSIC_LAYOUT[task.name][1]
    ragged: list[int] = []
    cola_header = list(_COLA_COLUMNS) if task.name == "cola" else None
    header, table = read_rows(text_lines(path, "File"), path, "\t", ragged, header=cola_header)
    missing = [name for name in columns.values() if name not in header]
    if missing:
        raise UsageError(
            f"File {path} has no column {', '.join(repr(c) for c in missing)}; "
            f"classic GLUE {task.name} files have columns {', '.join(columns.values())}."
        )
    # The real QQP and MNLI files hold a few broken lines; the GLUE loaders skipped them too.
    positions = {hub: header.index(classic) for hub, classic in columns.items()}
    rows: dict[str, list] = {hub: [] for hub in columns}
    unlabelled = []
    for line, fields in table:
        if not fields[positions["label"]].strip():
            unlabelled.append(line)
            continue
        for hub, position in positions.items():
            if hub != "label":
                rows[hub].append(fields[position])
        rows["label"].append(_label_id(task, fields[positions["label"]], f"line {line} of {path}"))
    report_skipped(path, {ragged_reason(header, "\t"): ragged, "no label": unlabelled}, kept=len(rows["label"]))
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
    records = _json_records(read_text(path), path) if suffix in (".json", ".jsonl") else table_records(path)
    if not records:
        raise UsageError(f"Data file {path} holds no rows.")
    return _columns_from_records(task, records, path)


def table_records(path: Path) -> list[dict]:
    """Rows of a csv or tsv file as dicts: TSV follows GLUE (no quoting), CSV the usual spreadsheet quoting; rows
    of the wrong width are skipped with one warning (`report_skipped`)."""
    delimiter, ragged = "\t" if path.suffix.lower() == ".tsv" else ",", []
    header, rows = read_rows(text_lines(path), path, delimiter, ragged)
    records = [dict(zip(header, fields)) for _, fields in rows]
    report_skipped(path, {ragged_reason(header, delimiter): ragged}, kept=len(records))
    return records


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
