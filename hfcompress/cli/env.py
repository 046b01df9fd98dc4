"""hfcompress env: versions and machine facts to paste into a bug report."""

import platform

import torch

from ..models import packaged_minilm_path
from ..report import library_versions


def run(argv: list[str]) -> int:
    info = library_versions()
    info["platform"] = platform.platform()
    info["cpu threads"] = str(torch.get_num_threads())
    info["cuda available"] = str(torch.cuda.is_available())
    info["packaged MiniLM"] = str(packaged_minilm_path() or "not installed")
    for key, value in info.items():
        print(f"- {key}: {value}")
    return 0
