"""The `hfcompress` command: dispatches to one module per subcommand."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from ..errors import HfcompressError
from .common import print_error

COMMANDS = {
    "distill": "Distil a teacher into a smaller student on a GLUE task.",
    "finetune": "Fine-tune a model on a GLUE task.",
    "evaluate": "Evaluate a model on a GLUE dev set (official metric, size, latency).",
    "prune": "Prune a model gradually while fine-tuning or distilling (unstructured, 2:4 or FFN neurons).",
    "quantize": "Quantize a model: ONNX Runtime int8 (CPU) or bitsandbytes int8 / NF4.",
    "factorize": "Low-rank factorization of Linear layers (truncated SVD, optionally activation-aware).",
    "run": "Run a recipe: several steps (distill, prune, quantize, evaluate ...) from one YAML file or preset.",
    "benchmark": "Compare models on a task: metric, size, memory, interleaved latency; table, JSON, CSV, charts.",
    "push": "Publish an output directory, with its model card, to the Hugging Face Hub.",
    "demo": "Fine-tune, distil, quantize and benchmark the packaged MiniLM end to end, offline.",
    "env": "Print versions for bug reports.",
}


def _usage() -> str:
    lines = [
        "usage: hfcompress <command> [options]   (hfcompress <command> --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def quiet_optional_kernels() -> None:
    """torchao, when installed, is imported by transformers on every model load and warns that its GPU-only
    kernels (and torch's pytree registrations) are missing; none of it matters on CPU, so only errors show."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import version

        print(version("hfcompress"))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print_error(name, f"unknown command '{name}'; choose one of: {', '.join(COMMANDS)}.")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_optional_kernels()
    module = importlib.import_module(f"hfcompress.cli.{name}")
    try:
        return module.run(rest)
    except HfcompressError as err:
        print_error(name, str(err))
        from ..outputs import abandon_unused

        abandon_unused()  # a run refused before writing leaves no folder, even when called in process
        return err.exit_code
    except KeyboardInterrupt:
        print_error(name, "interrupted.")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`hfcompress run --check ... | head`): stop quietly, as other Unix tools
        # do, and point stdout at /dev/null so Python's flush at exit does not print a second traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
