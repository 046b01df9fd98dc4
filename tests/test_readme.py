"""Every ```python block of the README runs exactly as printed, from a folder with ../shared beside it."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, THREADS

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
RUNNABLE = [block for block in BLOCKS if "CausalLMTask" in block]
# The "Python" section: the pruning example continues the distillation example (same student and data).
DISTILL = [block for block in BLOCKS if "DistillationTrainer(" in block]
PRUNE = [block for block in BLOCKS if "GradualMagnitudePruningCallback(" in block]


def test_every_python_block_is_run():
    assert RUNNABLE and len(DISTILL) == 1 and len(PRUNE) == 1
    assert sorted(BLOCKS) == sorted(RUNNABLE + DISTILL + PRUNE)


def _run(tmp_path, code):
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


def test_distillation_and_pruning_blocks_run(tmp_path):
    _, result = _run(tmp_path, DISTILL[0] + "\n" + PRUNE[0])
    lines = result.stdout.strip().splitlines()
    assert "3 4" in lines  # a 3-layer student, 4 distillation steps
    assert lines[-1] == "sparsity 0.90"


@pytest.mark.parametrize("code", RUNNABLE)
def test_python_block_runs(tmp_path, code):
    project, result = _run(tmp_path, code)
    assert (project / "runs" / "tiny-lm-ft" / "compression.json").is_file()
    perplexity = float(result.stdout.strip().splitlines()[-1].split()[0])
    assert 1 < perplexity < 700  # uniform over the 1,000-token vocabulary would be 1,000


RECIPES = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


@pytest.mark.parametrize("recipe", RECIPES)
def test_yaml_recipe_checks_out_as_printed(tmp_path, recipe):
    """The README's recipe, from the repository root as the README says, checked by `hfcompress run --check`."""
    (tmp_path / "recipe.yaml").write_text(recipe)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = ["run", str(tmp_path / "recipe.yaml"), "--output-dir", str(tmp_path / "edge"), "--check"]
    result = subprocess.run([sys.executable, "-m", "hfcompress", *command], cwd=ROOT, env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "5 steps, all checked" in result.stdout and "05-quantize: hfcompress quantize" in result.stdout
    assert not (tmp_path / "edge").exists()
