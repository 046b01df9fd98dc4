"""A recipe: steps of hfcompress commands, each taking the previous step's output, checked before anything runs.

    task: sst2                       # top-level keys are defaults for every step that has such an option
    data_dir: ../shared/data/glue
    model: out/teacher               # the first step's input
    steps:
      - distill: {student_layers: "3", num_train_epochs: 3}
      - prune: {structure: ffn, sparsity: 0.5, teacher: "@model"}
      - quantize: {method: onnx-int8-dynamic}

Every option has the name of the matching command's flag (dashes or underscores). A value "@model" is the
recipe's top-level model and "@NN-kind" (or "@kind") an earlier step's folder, e.g. `teacher: "@01-finetune"`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

STEP_KINDS = ("finetune", "distill", "prune", "factorize", "quantize", "evaluate", "push")
TRAINING_KINDS = ("finetune", "distill", "prune", "factorize")  # factorize: its --recovery-steps training resumes
REFERENCE_KEYS = ("model", "teacher", "student")  # options that name a model, so may name an earlier step
PRESETS_DIR = Path(__file__).parent / "presets"


@dataclass
class Step:
    index: int  # 1-based
    kind: str
    options: dict  # as written, keys normalised to underscores
    argv: list[str] = field(default_factory=list)  # the command's arguments, references resolved
    inputs: dict = field(default_factory=dict)  # option -> the model it names (a folder of OUT or external)

    @property
    def folder(self) -> str:
        return f"{self.index:02d}-{self.kind}"

    @property
    def writes_folder(self) -> bool:
        return self.kind not in ("evaluate", "push")


@dataclass
class Recipe:
    source: str  # the file or preset it came from
    defaults: dict
    steps: list[Step]
    text: str = ""


def command_module(kind: str):
    return importlib.import_module(f"hfcompress.cli.{kind}")


def option_names(kind: str) -> set[str]:
    """Every option the command `kind` accepts (its dataclasses' fields)."""
    names = {"config"}
    for kind_type in command_module(kind).TYPES:
        names |= {f.name for f in dataclasses.fields(kind_type) if f.init}
    return names


def _normalise(options: dict, where: str) -> dict:
    if not isinstance(options, dict):
        raise UsageError(f"{where} must be a mapping of option names to values, not {type(options).__name__}.")
    return {str(key).replace("-", "_"): value for key, value in options.items()}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def read_recipe(name_or_path: str) -> Recipe:
    """Parse a recipe file (or a named preset) with yaml.safe_load; shape errors are one sentence each."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        preset = PRESETS_DIR / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise UsageError(
                f"'{name_or_path}' is neither a recipe file nor a preset; presets: {', '.join(preset_names())}."
            )
        path = preset
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"Recipe '{path}' is not valid YAML for safe loading{line}: {problem}.") from None
    data = _normalise(data, f"Recipe '{path}'")
    steps = data.pop("steps", None)
    if not isinstance(steps, list) or not steps:
        raise UsageError(f"Recipe '{path}' needs a non-empty list under 'steps:'.")
    parsed = []
    for index, entry in enumerate(steps, 1):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UsageError(
                f"Step {index} of '{path}' must be one command name with its options, e.g. '- distill: {{}}'."
            )
        ((kind, options),) = entry.items()
        if kind not in STEP_KINDS:
            raise UsageError(f"Step {index} of '{path}' is '{kind}'; steps are {', '.join(STEP_KINDS)}.")
        parsed.append(Step(index, kind, _normalise(options or {}, f"Step {index} ({kind})")))
    return Recipe(str(path), data, parsed, text)


def to_argv(options: dict) -> list[str]:
    """Options as command-line flags: booleans as true/false, lists as several values, None left out."""
    argv = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *map(str, values)]
    return argv


def plan(recipe: Recipe, out: Path, overrides: dict | None = None) -> Recipe:
    """Resolve every step's options and check the whole recipe before anything runs.

    Top-level keys (and `overrides`, from the command line) are defaults for each step whose command has that
    option; a key no step knows is an error, as is an option its own step's command does not have. Each step's
    arguments are parsed by its command's own parser, so impossible values fail here, not hours later.
    """
    defaults = {**recipe.defaults, **_normalise(overrides or {}, "The command-line options")}
    known = {kind: option_names(kind) for kind in {s.kind for s in recipe.steps}}
    unknown = sorted(set(defaults) - set().union(*known.values()))
    if unknown:
        raise UsageError(f"Recipe '{recipe.source}' has option(s) that no step's command knows: {', '.join(unknown)}.")
    current, produced, quantized = defaults.get("model"), {}, set()
    if current is None and "model" not in recipe.steps[0].options:
        raise UsageError("The recipe's first step needs a model: set 'model:' at the top, or pass --model.")
    for step in recipe.steps:
        name = f"Step {step.index} ({step.kind})"
        bad = sorted(set(step.options) - known[step.kind] - {"model"})
        if bad:
            raise UsageError(f"{name} has option(s) that `hfcompress {step.kind}` does not know: {', '.join(bad)}.")
        if {"output_dir", "output_file"} & set(step.options):
            raise UsageError(
                f"{name} names its output; each step writes its own folder under the recipe's output dir."
            )
        options = {k: v for k, v in defaults.items() if k in known[step.kind] and k != "model"}
        options.update(step.options)
        for key in REFERENCE_KEYS:
            if isinstance(options.get(key), str):
                options[key] = _resolve(options[key], defaults, produced, f"{name}'s {key}")
        source = str(options.pop("model", None) or current or "")
        if not source:
            raise UsageError(f"{name} has no input model: no earlier step makes one; set 'model:'.")
        if step.kind != "evaluate" and step.kind != "push" and source in quantized:
            raise UsageError(f"{name} would start from the quantized model of {Path(source).name}; put quantize last.")
        step.inputs = {"model": source, **{k: str(options[k]) for k in ("teacher", "student") if options.get(k)}}
        step.argv = _step_argv(step, source, options, out)
        _check_parses(step, name)
        if step.writes_folder:
            produced[step.folder] = produced[step.kind] = current = str(out / step.folder)
            if step.kind == "quantize":
                quantized.add(current)
    _check_models(recipe, set(produced.values()))
    return recipe


def _resolve(value: str, defaults: dict, produced: dict, what: str) -> str:
    if not value.startswith("@"):
        return value
    ref = value[1:]
    if ref == "model":
        if not defaults.get("model"):
            raise UsageError(f"{what} is '@model' but the recipe has no top-level model.")
        return str(defaults["model"])
    if ref not in produced:
        raise UsageError(f"{what} is '{value}', which no earlier step produces.")
    return produced[ref]


def _step_argv(step: Step, source: str, options: dict, out: Path) -> list[str]:
    if step.kind == "push":
        return [source, *to_argv(options)]
    argv = [source, *to_argv(options)]
    if step.kind == "evaluate":
        return argv + ["--output_file", str(out / f"{step.folder}.json")]
    return argv + ["--output_dir", str(out / step.folder)]


def _check_parses(step: Step, name: str) -> None:
    try:
        command_module(step.kind).parse(step.argv)
    except UsageError as err:
        raise UsageError(f"{name}: {err}") from None
    except SystemExit:  # argparse has printed why (a value of the wrong type, a bad choice)
        raise UsageError(f"{name} has an invalid option value (see the message above).") from None


def _check_models(recipe: Recipe, produced: set[str]) -> None:
    """Every model the recipe names that no step produces must exist and suit the step's task."""
    from ..models import check_model_available, load_config

    for step in recipe.steps:
        parsed = command_module(step.kind).parse(step.argv)
        data = next((p for p in parsed if hasattr(p, "task_obj")), None)
        for key, model in step.inputs.items():
            if model in produced:
                continue
            if step.kind == "push":
                if not Path(model).is_dir():
                    raise UsageError(f"Step {step.index} (push) publishes '{model}', which is not a folder.")
                continue
            try:
                check_model_available(model)
                config = load_config(model)
            except Exception as err:  # noqa: BLE001 - any failure here is the recipe's input, said in one line
                raise UsageError(f"Step {step.index} ({step.kind})'s {key}: {err}") from None
            if data is not None and getattr(data, "task_obj", None) is not None:
                try:
                    data.task_obj.check_config(config, model)
                except UsageError as err:
                    raise UsageError(f"Step {step.index} ({step.kind}): {err}") from None
