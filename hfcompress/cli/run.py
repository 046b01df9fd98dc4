"""hfcompress run RECIPE.yaml|PRESET --output-dir OUT [--check] [--OPTION VALUE ...]"""

from __future__ import annotations

from ..errors import UsageError

USAGE = """usage: hfcompress run RECIPE --output-dir OUT [--check] [--OPTION VALUE ...]
       hfcompress run --list

Run the steps of a recipe (a YAML file, or a preset's name) one after another, each step reading the previous
step's output and writing OUT/NN-kind. The whole recipe is checked before anything runs. Rerunning the same
command skips finished steps, resumes an interrupted training step and reruns steps whose settings changed.

  RECIPE            a YAML file with `steps:` (see README), or a preset: {presets}
  --output-dir OUT  the recipe's folder (new, empty, or an earlier run of a recipe)
  --check           check the recipe and print each step's command, run nothing
  --list            list the presets with their description
  --OPTION VALUE    a top-level default for every step with that option, overriding the recipe's
                    (e.g. --model out/teacher --task sst2 --data-dir ../shared/data/glue)
"""


def parse(argv: list[str]) -> tuple[str | None, str | None, dict, bool, bool]:
    recipe, out, options, check, listing = None, None, {}, False, False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            if recipe is not None:
                raise UsageError(f"One recipe at a time: got '{recipe}' and '{arg}'.")
            recipe, i = arg, i + 1
            continue
        name, _, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name in ("check", "list"):
            check, listing = check or name == "check", listing or name == "list"
            i += 1
            continue
        if not value and "=" not in arg:
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            value, i = (argv[i + 1], i + 2) if has_value else ("true", i + 1)
        else:
            i += 1
        if name == "output_dir":
            out = value
        else:
            options[name] = value
    return recipe, out, options, check, listing


def run(argv: list[str]) -> int:
    from ..recipes import preset_names, run_recipe
    from ..recipes.recipe import PRESETS_DIR

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(presets=", ".join(preset_names())))
        return 0 if argv else 2
    recipe, out, options, check, listing = parse(argv)
    if listing:
        for name in preset_names():
            first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"{name:<18} {first}")
        return 0
    if recipe is None:
        raise UsageError("A recipe is required: hfcompress run RECIPE.yaml --output-dir OUT (or a preset's name).")
    if out is None:
        raise UsageError("--output-dir is required: the folder that holds every step's output.")
    run_recipe(recipe, out, options, check=check)
    return 0
