"""Argument parsing shared by every command: dataclass flags, a positional model, and --config YAML."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import UsageError

SECRET_OPTION = "hub_token"


def _is_secret_flag(flag: str) -> bool:
    """--hub_token, --hub-token and every abbreviation argparse accepts for them (--hub_tok, --hub-t ...)."""
    if not flag.startswith("--"):
        return False
    name = flag[2:].replace("-", "_")
    return len(name) > len("hub_") and SECRET_OPTION.startswith(name)


def command_line(argv: list[str], name: str, secrets: tuple[str, ...] = ()) -> str:
    """The command as typed, for compression.json, with any Hub token replaced by <redacted>.

    A token is hidden after any spelling of its flag, and any of `secrets` (the parsed token, however it was
    given) is scrubbed wherever else it appears.
    """
    shown, hide_next = [], False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            arg, hide_next = "<redacted>", False
        elif _is_secret_flag(arg):
            hide_next = True
        elif "=" in arg and _is_secret_flag(arg.split("=", 1)[0]):
            arg = arg.split("=", 1)[0] + "=<redacted>"
        for secret in secrets:
            if secret:
                arg = arg.replace(secret, "<redacted>")
        shown.append(arg)
    return " ".join(shlex.quote(a) for a in ["hfcompress", name, *shown])


def _pop_config(argv: list[str]) -> tuple[list[str], str | None]:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[:i] + argv[i + 2 :], argv[i + 1]
        if arg.startswith("--config="):
            return argv[:i] + argv[i + 1 :], arg.split("=", 1)[1]
    return argv, None


def parse_dataclasses(argv: list[str], types: tuple, prog: str, description: str, positional: str | None = None):
    """Parse `argv` into instances of `types` with `transformers.HfArgumentParser`.

    `positional` names the field filled by a leading bare argument (`hfcompress evaluate MODEL ...`).
    Values from `--config file.yaml` are defaults that flags on the command line override.
    """
    import yaml
    from transformers import HfArgumentParser

    usage = f"hfcompress {prog} {positional.upper() + ' ' if positional else ''}[options]"
    parser = HfArgumentParser(types, prog=f"hfcompress {prog}", description=description, usage=usage)
    parser.add_argument("--config", help="YAML file of options (same names as the flags); flags given here win.")
    argv, config_path = _pop_config(list(argv))
    if positional and argv and not argv[0].startswith("-"):
        argv = [f"--{positional}", argv[0], *argv[1:]]
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise UsageError(f"Config file '{path}' does not exist.")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UsageError(f"Config file '{path}' is not valid YAML for safe loading{line}: {problem}.") from None
        if not isinstance(values, dict):
            raise UsageError(f"Config file '{path}' must hold a mapping of option names to values.")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"Config file '{path}' has unknown option(s): {', '.join(unknown)}.")
        parser.set_defaults(**values)
        # A required flag supplied by the config file is no longer required on the command line.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except UsageError:
        raise
    except ValueError as err:  # TrainingArguments' own checks
        raise UsageError(str(err).strip().splitlines()[0]) from err
    except ImportError as err:  # an engine TrainingArguments loads: --deepspeed without the deepspeed package
        if "deepspeed" in str(err).lower():
            raise UsageError("--deepspeed needs the deepspeed package, which is not installed.") from err
        raise
    return parsed[: len(types)]


def print_error(prog: str, message: str) -> None:
    print(f"hfcompress {prog}: error: {message}", file=sys.stderr)
