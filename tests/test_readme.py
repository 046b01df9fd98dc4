"""The README's causal-LM ```python block runs exactly as printed, from a folder with ../shared beside it."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
RUNNABLE = [block for block in BLOCKS if "CausalLMTask" in block]


def test_the_readme_has_a_runnable_python_example():
    assert RUNNABLE


@pytest.mark.parametrize("code", RUNNABLE)
def test_python_block_runs(tmp_path, code):
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / "runs" / "tiny-lm-ft" / "compression.json").is_file()
    perplexity = float(result.stdout.strip().splitlines()[-1].split()[0])
    assert 1 < perplexity < 1000
