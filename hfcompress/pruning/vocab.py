"""Vocabulary pruning: keep only the tokens a task's texts use (as TextPruner does), in the embedding matrix, a
tied or untied output head, the tokenizer and `config.vocab_size`.

A small encoder spends most of its parameters on word embeddings (MiniLM-L6: 11.7 M of 22.7 M), so shrinking the
blocks alone cannot make it much smaller. The kept tokens keep their relative order, renumbered 0..n-1, and the
tokenizer is rewritten to match, so the result loads with plain `from_pretrained` / `AutoTokenizer`. WordPiece's
greedy longest-match splits a word the same way whenever every piece it used is kept, so every text whose tokens
were all kept gets the same logits; a word with a dropped piece is split into kept pieces or read as the unknown
token.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from ..architecture import count_parameters
from ..errors import HfcompressError, UsageError
from ..models import check_model_available, load_for_task, load_tokenizer
from ..pipeline import (
    as_task,
    check_training_output,
    finish_run,
    latency_info,
    latency_runs_of,
    measure,
    prepare_pair,
    save_artifact,
)
from ..report import build_report, upstream
from ..tasks import TaskType
from .surgery import check_rebuildable

CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                    "unk_token_id", "mask_token_id", "decoder_start_token_id")  # fmt: skip
CHECK_ROWS = 32  # texts whose logits are compared before and after pruning, before anything is saved


def check_wordpiece(tokenizer, name: str) -> None:
    """Refuse, before any work, a tokenizer whose vocabulary this module cannot rewrite (one sentence)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else f"slow ({type(tokenizer).__name__})"
    if kind != "WordPiece":
        raise UsageError(
            f"Vocabulary pruning supports WordPiece tokenizers (BERT-family encoders such as MiniLM, DistilBERT "
            f"and ELECTRA), but '{name}' uses a {kind} tokenizer."
        )


def encode(tokenizer, rows: list[tuple[str, ...]], batch: int = 1000) -> list[list[int]]:
    """Token ids of each row (one text or a pair) with special tokens, untruncated, as the task feeds them."""
    ids = []
    for start in range(0, len(rows), batch):
        columns = list(zip(*rows[start : start + batch]))
        ids += tokenizer(*[list(c) for c in columns], truncation=False, verbose=False)["input_ids"]
    return ids


def always_kept(tokenizer, config, rows: int) -> set[int]:
    """Special and added tokens, and any token id the model's config names (pad, bos, eos, ...)."""
    keep = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    keep |= {getattr(config, key) for key in CONFIG_TOKEN_IDS if isinstance(getattr(config, key, None), int)}
    return {i for i in keep if 0 <= i < rows}


def choose_tokens(counts: Counter, always: set[int], min_count: int) -> list[int]:
    """The old ids kept, in their old order: tokens seen at least `min_count` times, and `always`."""
    return sorted(always | {i for i, n in counts.items() if n >= min_count})


def embedding_share(model) -> float:
    return round(model.get_input_embeddings().weight.numel() / count_parameters(model), 6)


@torch.no_grad()
def prune_embeddings(model, kept: list[int]) -> None:
    """Keep the rows `kept` of the input embeddings and of the output embeddings (weight and bias), tied or not,
    and renumber the config's token ids."""
    index = torch.tensor(kept)
    new_id = {old: new for new, old in enumerate(kept)}
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    rows = inputs.weight.shape[0]
    if kept[-1] >= rows:
        raise UsageError(f"The tokenizer has token id {kept[-1]}, but the model embeds only {rows} tokens.")
    replaced = {}  # id of an old Parameter -> its new one, so every module sharing it (tied weights) gets the new one
    for module in (inputs, outputs):
        for name in ("weight", "bias"):
            param = getattr(module, name, None) if module is not None else None
            if not isinstance(param, nn.Parameter) or id(param) in replaced:
                continue
            if param.shape[0] != rows:
                raise UsageError(f"The output head has {param.shape[0]} rows but the embeddings {rows}; cannot prune.")
            replaced[id(param)] = nn.Parameter(param.index_select(0, index.to(param.device)).clone(),
                                               requires_grad=param.requires_grad)  # fmt: skip
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and id(param) in replaced:
                module._parameters[name] = replaced[id(param)]
    inputs.num_embeddings = len(kept)
    if inputs.padding_idx is not None:
        inputs.padding_idx = new_id.get(inputs.padding_idx)
    if outputs is not None and hasattr(outputs, "out_features"):
        outputs.out_features = len(kept)
    config = model.config
    config.vocab_size = len(kept)
    for key in CONFIG_TOKEN_IDS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value in new_id:
            setattr(config, key, new_id[value])


def _remap_processor(processor: dict | None, new_id: dict[int, int]) -> None:
    """Renumber the special-token ids a post-processor adds ([CLS], [SEP]), in place."""
    if not processor:
        return
    for sub in processor.get("processors") or []:  # a Sequence of processors
        _remap_processor(sub, new_id)
    for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
        if key in processor:
            processor[key][1] = new_id[processor[key][1]]
    for special in (processor.get("special_tokens") or {}).values():  # TemplateProcessing
        special["ids"] = [new_id[i] for i in special["ids"]]


def prune_tokenizer(tokenizer, kept: list[int]):
    """A tokenizer of the same class and settings whose vocabulary is `kept` (old ids), renumbered 0..n-1.

    It is saved to a temporary folder (transformers 5 writes the whole vocabulary, added tokens included, into
    tokenizer.json alone), that file is rewritten, and it is loaded back with `AutoTokenizer`, as a user will.
    """
    from transformers import AutoTokenizer

    new_id = {old: new for new, old in enumerate(kept)}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tokenizer.save_pretrained(folder)
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = spec["model"]["vocab"]
        spec["model"]["vocab"] = {token: new_id[i] for token, i in vocab.items() if i in new_id}
        for added in spec.get("added_tokens") or []:
            added["id"] = new_id[added["id"]]
        _remap_processor(spec.get("post_processor"), new_id)
        if spec.get("padding"):
            spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
        (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        return AutoTokenizer.from_pretrained(folder)


def check_same_ids(old_ids: list[list[int]], new_ids: list[list[int]], kept: list[int]) -> int:
    """Prove the new tokenizer reads every text whose tokens were all kept as the old one did, renumbered.

    Returns how many rows were checked; raises if any differs (nothing is saved then).
    """
    new_id = {old: new for new, old in enumerate(kept)}
    checked = 0
    for row, (old, new) in enumerate(zip(old_ids, new_ids)):
        if all(i in new_id for i in old):
            checked += 1
            if [new_id[i] for i in old] != new:
                raise HfcompressError(
                    f"The pruned tokenizer splits text row {row + 1} differently from the original; nothing was "
                    "saved (please report this with the model name)."
                )
    return checked


def dev_token_changes(old_ids: list[list[int]], new_ids: list[list[int]], kept: list[int], old_unk, new_unk) -> dict:
    """What pruning did to the evaluation texts: tokens whose id was dropped, new unknown tokens, rows changed."""
    kept_set = set(kept)
    tokens = sum(len(ids) for ids in old_ids)
    dropped = sum(1 for ids in old_ids for i in ids if i not in kept_set)
    unk_before = sum(ids.count(old_unk) for ids in old_ids) if old_unk is not None else 0
    unk_after = sum(ids.count(new_unk) for ids in new_ids) if new_unk is not None else 0
    changed = sum(1 for ids in old_ids if any(i not in kept_set for i in ids))
    fraction = round(dropped / tokens, 6) if tokens else 0.0
    return {"tokens": tokens, "tokens_dropped": dropped, "dropped_fraction": fraction,
            "new_unknown_tokens": unk_after - unk_before, "rows": len(old_ids), "rows_changed": changed}  # fmt: skip


def task_rows(task, splits, names) -> list[tuple[str, ...]]:
    return [row for name in names for row in task.text_rows(splits[name], len(splits[name]))]


@torch.no_grad()
def logits_of(model, tokenizer, rows, max_length: int) -> torch.Tensor:
    batch = tokenizer(*[list(c) for c in zip(*rows)], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(model.device)  # fmt: skip
    return model(**batch).logits.float().cpu()


def run_vocab(model_args, data_args, pruning, teacher_args, args, command: str = "") -> dict:
    """Keep the tokens of the task's texts, check the logits did not change on them, save, measure, report."""
    task = as_task(data_args)
    runs = latency_runs_of(data_args)
    name = check_model_available(model_args.model)
    check_wordpiece(load_tokenizer(name, model_args.trust_remote_code, model_args.revision), name)
    if task.kind == TaskType.CAUSAL_LM:
        raise UsageError("Vocabulary pruning supports classification tasks (GLUE or --task classification).")
    if teacher_args.teacher:
        raise UsageError("--structure vocab keeps the model's outputs and trains nothing; leave out --teacher.")
    output_dir = check_training_output(args, (model_args.model,))
    model_name, _, splits, tokenizer = prepare_pair(model_args.model, None, task, model_args)
    model, fresh = load_for_task(model_name, task, model_args)
    if fresh:
        raise UsageError(
            f"'{model_name}' is not fine-tuned for {task.name}; vocabulary pruning keeps a trained model's outputs, "
            "so fine-tune it first."
        )
    model.eval()
    dev_splits = [s for s in task.validation_splits if s in splits]
    source_splits = ["train", *dev_splits] if pruning.vocab_source == "train+validation" else ["train"]
    rows, dev_rows = task_rows(task, splits, source_splits), task_rows(task, splits, dev_splits)
    source_dir = model_name if Path(model_name).is_dir() else None
    source = measure(model, tokenizer, task, splits, "original", model_name, source_dir, runs,
                     model_args.max_seq_length)  # fmt: skip

    started = time.perf_counter()
    size = model.get_input_embeddings().weight.shape[0]
    old_ids = encode(tokenizer, rows)
    counts = Counter(i for ids in old_ids for i in ids)
    kept = choose_tokens(counts, always_kept(tokenizer, model.config, size), pruning.vocab_min_count)
    if len(kept) >= size:
        raise UsageError(f"The task's texts use all {size} tokens of the vocabulary; there is nothing to prune.")
    kept_set = set(kept)
    check_rows = [row for row, ids in zip(rows, old_ids) if kept_set.issuperset(ids)][:CHECK_ROWS]
    expected = logits_of(model, tokenizer, check_rows, model_args.max_seq_length) if check_rows else None
    before = {"vocab_size": size, "parameters": count_parameters(model), "embedding_share": embedding_share(model)}
    new_tokenizer = prune_tokenizer(tokenizer, kept)
    checked = check_same_ids(old_ids, encode(new_tokenizer, rows), kept)
    prune_embeddings(model, kept)
    check_rebuildable(model)
    difference = None
    if check_rows:
        got = logits_of(model, new_tokenizer, check_rows, model_args.max_seq_length)
        difference = float((got - expected).abs().max())
    if difference is not None and difference > 1e-5:
        raise HfcompressError(
            f"The pruned model's logits differ by {difference:.3g} from the original's on the task's texts; nothing "
            "was saved (please report this with the model name)."
        )
    dev = dev_token_changes(encode(tokenizer, dev_rows), encode(new_tokenizer, dev_rows), kept,
                            tokenizer.unk_token_id, new_tokenizer.unk_token_id)  # fmt: skip
    seconds = time.perf_counter() - started
    save_artifact(model, new_tokenizer, output_dir)

    result = measure(model, new_tokenizer, task, splits, "pruned", str(output_dir), output_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    result["vocabulary"] = {
        "vocab_size": [size, len(kept)], "source": pruning.vocab_source, "min_count": pruning.vocab_min_count,
        "embedding_share": [before["embedding_share"], embedding_share(model)], "dev": dev,
    }  # fmt: skip
    settings = {"structure": "vocab", "vocab_source": pruning.vocab_source, "source_splits": source_splits,
                "vocab_min_count": pruning.vocab_min_count, "source_rows": len(rows), "rows_checked": checked,
                "max_logit_difference": difference, "seconds": round(seconds, 2), "before": before}  # fmt: skip
    step = {"method": "vocab-pruning", "model": model_name, "settings": settings,
            "parameters": result["parameters"], "size_bytes": result["size_bytes"]}  # fmt: skip
    lineage, origin = upstream(model_name)
    report = build_report(task, command, source, result, [*lineage, step], latency_info(runs, task), origin)
    report["data"] = task.data_source()
    finish_run(report, output_dir, args, "Vocabulary pruning", source_dir=source_dir)
    return report
