"""Model cards written from a run's compression.json: `write_model_card(OUT)` renders `OUT/README.md`.

The template is `model_cards/model_card.md.j2` (shipped in the wheel as `hfcompress/model_cards`). Every number
comes from `OUT/compression.json` (and `training_args.json`, `config.json` beside it); nothing is a placeholder.
The card is idempotent: rendering twice gives the same bytes, notes written between the card's notes markers are
kept, a README found in the output folder (not written by hfcompress or the Trainer) becomes those notes, and the
README of a local source model is merged in (its license, and its text in a collapsed section).
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

import yaml

from ..errors import HfcompressError, UsageError
from ..report import REPORT_NAME, read_report
from ..tasks import task_from_report
from .chart import CHART_NAME, write_chart
from .metadata import CARD_NAME, base_model, card_metadata, data_info, read_card, read_json, run_id, same_path
from .sections import (
    BACKENDS,
    METHOD_NAMES,
    data_sentence,
    hyperparameters,
    is_factorized_card,
    latency_note,
    limitations,
    lineage_rows,
    mentions_local_paths,
    redact,
    result_rows,
    short_path,
    snippet_context,
    source_label,
    summary,
)

logger = logging.getLogger("hfcompress")

TEMPLATE = "model_card.md.j2"
GENERATED = "<!-- hfcompress:generated from compression.json (run {run}); re-rendering keeps only the notes below -->"
NOTES = ("<!-- hfcompress:notes:start (your notes go here and are kept) -->", "<!-- hfcompress:notes:end -->")
SOURCE_CARD = ("<!-- hfcompress:source-card:start -->", "<!-- hfcompress:source-card:end -->")
REPO_MARK = re.compile(r"<!-- hfcompress:repo_id=([\w.-]+/[\w.-]+) -->")


def write_model_card(
    output_dir: str | Path, source_dir: str | Path | None = None, *, repo_id: str | None = None
) -> Path:
    """Render `output_dir/README.md` (and the chart beside it) from `output_dir/compression.json`.

    `source_dir` is the local folder of the source model, whose README is merged in; by default the source
    named in compression.json when it is a local folder. `repo_id` makes the usage snippet load from the Hub
    (kept from the previous card when not given).
    """
    output_dir = Path(output_dir)
    report = load_report(output_dir)
    chart = write_chart(report, output_dir)
    text = render_model_card(output_dir, source_dir, repo_id=repo_id, report=report, chart=chart)
    path = output_dir / CARD_NAME
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def render_model_card(
    output_dir: str | Path,
    source_dir: str | Path | None = None,
    *,
    repo_id: str | None = None,
    report: dict | None = None,
    chart: Path | None = None,
) -> str:
    """The card's text, without writing anything."""
    output_dir = Path(output_dir)
    report = report or load_report(output_dir)
    existing = read_card(output_dir / CARD_NAME)
    source_dir = _source_dir(report, output_dir, source_dir)
    source = read_card(source_dir / CARD_NAME) if source_dir else None
    context = card_context(report, output_dir, existing, source, repo_id, chart)
    return _environment().get_template(TEMPLATE).render(**context)


def load_report(output_dir: Path) -> dict:
    report = read_report(output_dir)
    if report is None:
        raise UsageError(
            f"'{output_dir}' has no {REPORT_NAME}; a model card is written from an hfcompress run's report."
        )
    missing = [key for key in ("task", "source", "result", "steps") if key not in report]
    if missing:
        raise UsageError(f"{output_dir / REPORT_NAME} lacks '{missing[0]}'; it was not written by hfcompress.")
    if not report["task"]:
        raise UsageError(f"{output_dir / REPORT_NAME} names no task, and a card reports results on one.")
    return report


def template_dir():
    """The folder holding the card templates: inside the installed package, else the source tree's model_cards/."""
    packaged = resources.files("hfcompress").joinpath("model_cards")
    if packaged.joinpath(TEMPLATE).is_file():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "model_cards"
    if (source_tree / TEMPLATE).is_file():
        return source_tree
    raise HfcompressError("The model card template (model_cards/model_card.md.j2) is missing; reinstall hfcompress.")


def _environment():
    import jinja2

    folder = template_dir()
    loader = jinja2.FunctionLoader(lambda name: folder.joinpath(name).read_text(encoding="utf-8"))
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def card_context(report: dict, output_dir: Path, existing: dict | None, source: dict | None, repo_id, chart) -> dict:
    task = task_from_report(report)
    src, res = report["source"], report["result"]
    steps = report.get("steps") or []
    config = read_json(output_dir / "config.json")
    run = run_id(report)
    if existing and existing["ours"] and f"(run {run})" not in existing["text"]:
        logger.warning(
            "README.md is the card of another run (an earlier one, or copied from the source); replacing it."
        )
        existing = None
    if repo_id is None and existing:
        match = REPO_MARK.search(existing["text"])
        repo_id = match.group(1) if match else None
    backend = res.get("backend") or "transformers"
    data = data_info(report, output_dir)
    base, relation = base_model(report, output_dir, source)
    metadata = card_metadata(
        report, output_dir, task, data, base, relation, backend, config, existing, source, repo_id
    )
    name = repo_id.split("/")[-1] if repo_id else output_dir.resolve().name
    usage = "factorized" if is_factorized_card(config, backend) else backend if backend in BACKENDS else "transformers"
    return {
        "metadata": yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000).strip(),
        "generated": GENERATED.format(run=run),
        "repo_id": repo_id,
        "name": name,
        "summary": summary(report, output_dir, task, config, backend),
        "data_sentence": data_sentence(data, task),
        "lineage": lineage_rows(report, output_dir),
        "source_label": source_label(src),
        "results": result_rows(report),
        "latency_note": latency_note(report),
        "chart": CHART_NAME if chart else None,
        "backend": usage,
        "snippet": snippet_context(report, output_dir, task, config, repo_id, backend),
        "hyperparameters": hyperparameters(output_dir),
        "steps_without_training": [
            METHOD_NAMES.get(s.get("method"), s.get("method"))
            for s in steps
            if s.get("method", "").startswith("quantiz")
        ],
        "command": redact(report.get("command") or ""),
        "command_is_local": mentions_local_paths(report.get("command") or ""),
        "versions": report.get("versions") or {},
        "limitations": limitations(report, task, data, backend),
        "source_card": _source_card(source, existing, src.get("model")),
        "notes": _notes(existing),
        "markers": {"notes": NOTES, "source": SOURCE_CARD},
    }


def _source_dir(report: dict, output_dir: Path, source_dir) -> Path | None:
    if source_dir is not None:
        source_dir = Path(source_dir)
        if not source_dir.is_dir():
            raise UsageError(f"Source model folder '{source_dir}' does not exist.")
    else:
        name = report["source"].get("model")
        source_dir = Path(name) if isinstance(name, str) and name and Path(name).is_dir() else None
    if source_dir is None or same_path(source_dir, output_dir):
        return None
    return source_dir


def _source_card(source: dict | None, existing: dict | None, source_name) -> str:
    """The source model's own card, collapsed; kept from the previous render when the source is gone."""
    if source is None or source["auto"]:
        if existing and existing["ours"]:
            return _between(existing["text"], *SOURCE_CARD) or ""
        return ""
    if source["ours"] or not source["body"]:
        return ""
    body = re.sub(r"^(#{1,4}) ", r"##\1 ", source["body"], flags=re.MULTILINE)  # nest its headings under ours
    return (
        f"<details>\n<summary>Card of the source model (<code>{short_path(source_name)}</code>), as it was</summary>"
        f"\n\n{body}\n\n</details>"
    )


def _notes(existing: dict | None) -> str:
    if existing is None:
        return ""
    if existing["ours"]:
        return _between(existing["text"], *NOTES) or ""
    if existing["auto"]:
        logger.info("Replacing the auto-generated README.md with hfcompress's model card.")
        return ""
    logger.warning("README.md was not written by hfcompress: its text is kept in the card's notes section.")
    return existing["body"]


def _between(text: str, start: str, end: str) -> str | None:
    i, j = text.find(start), text.find(end)
    return text[i + len(start) : j].strip() if 0 <= i < j else None
