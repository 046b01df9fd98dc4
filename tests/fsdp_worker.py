"""Worker for test_fsdp: hfcompress's FSDP2 code paths under torchrun on CPU (gloo), one JSON per rank.

Accelerate 1.15 shards only on accelerators: with `use_cpu` it ignores an FSDP plugin and runs plain DDP (so the
CLI refuses --fsdp on CPU). `force_fsdp_on_cpu` lifts that one switch, so the Trainer prepares the student with
FSDP2 (DTensor shards, gloo collectives) as it does on GPUs; everything else is the real code. `prune_run` and
`distill_run` also run in one plain process (the test calls them) for the comparison.
"""

import functools
import hashlib
import json
import sys
from copy import deepcopy
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_classifier  # noqa: E402
from test_distillation_trainer import dataset  # noqa: E402

from hfcompress.distillation import DistillationArguments, DistillationTrainer  # noqa: E402
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig  # noqa: E402
from hfcompress.pruning.report import make_permanent  # noqa: E402
from hfcompress.sharding import gathered_model, is_fsdp2_model  # noqa: E402
from hfcompress.training import run_training  # noqa: E402

FSDP = dict(fsdp=True, fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"]}, ddp_backend="gloo")
ROWS = 8  # one step is the whole data set: 2 ranks x 4 rows, or 1 process x 8, whatever the order


def args_for(out: str, fsdp: bool, cls=TrainingArguments, **kwargs):
    return cls(output_dir=out, max_steps=6, per_device_train_batch_size=4 if fsdp else ROWS, learning_rate=1e-2,
               report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0,
               **(FSDP if fsdp else {}), **kwargs)  # fmt: skip


def force_fsdp_on_cpu() -> None:
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    @functools.wraps(original)
    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


def digest_of(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def logits_of(model, tokenizer) -> list:
    batch = tokenizer(["a gripping and clever film", "boring"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.eval()(**batch).logits.tolist()


def saved_and_reloaded(model, tokenizer, folder: Path) -> dict:
    """Save as the CLI does (main process alone) and load back: the weights a user would get."""
    model.save_pretrained(folder, safe_serialization=True)
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    return {"logits": logits_of(reloaded, tokenizer), "reloaded_logits_match": logits_of(model, tokenizer)
            == logits_of(reloaded, tokenizer)}  # fmt: skip


def prune_run(tokenizer, out: str, fsdp: bool) -> dict:
    pruner = GradualMagnitudePruningCallback(PruningConfig(sparsity=0.7, end_step=4, update_frequency=2))
    trainer = Trainer(model=tiny_classifier("bert", layers=2, seed=0), args=args_for(out, fsdp),
                      train_dataset=dataset(tokenizer, ROWS), processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[pruner])  # fmt: skip
    sharded = trainer.is_fsdp_enabled
    run_training(trainer, trainer.args)  # gathers the FSDP2 model at the end, every rank
    model = trainer.model
    make_permanent(pruner, model)
    zeros_match = all(torch.equal(m.weight.eq(0), ~pruner.masks[n]) for n, m in pruner.modules.items())
    record = {"sharded": sharded, "plain_after": not is_fsdp2_model(model), "masks": digest_of(pruner.masks),
              "keep": {n: m.flatten().tolist() for n, m in pruner.masks.items()}, "zeros_match_masks": zeros_match,
              "sparsity": pruner.current_sparsity, "history": pruner.history}  # fmt: skip
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        record.update(saved_and_reloaded(model, tokenizer, Path(out) / "pruned"))
    return record


def distill_run(tokenizer, out: str, fsdp: bool) -> dict:
    teacher = tiny_classifier("bert", layers=4, hidden=32, seed=0)
    student = tiny_classifier("bert", layers=2, hidden=16, seed=1)
    args = args_for(out, fsdp, DistillationArguments, hidden_weight=1.0)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=dataset(tokenizer, ROWS),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    teacher_sharded = is_fsdp2_model(trainer.teacher)
    before = digest_of(dict(trainer.hidden_projection.named_parameters()))
    run_training(trainer, trainer.args)
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    projection = dict(trainer.hidden_projection.named_parameters())
    record = {"sharded": trainer.is_fsdp_enabled, "teacher_sharded": teacher_sharded,
              "teacher_in_optimizer": any(id(p) in in_optimizer for p in trainer.teacher.parameters()),
              "projection_in_optimizer": all(id(p) in in_optimizer for p in projection.values()),
              "projection": digest_of(projection), "projection_changed": digest_of(projection) != before,
              "student": digest_of(dict(trainer.model.named_parameters())),
              "loss": trainer.state.log_history[-1]["train_loss"]}  # fmt: skip
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        record.update(saved_and_reloaded(trainer.model, tokenizer, Path(out) / "student"))
    return record


def sharded_masks_match() -> dict:
    """The callback on an FSDP2 model and on a plain copy of it: the same masks and the same masked weights."""
    from torch.distributed.fsdp import fully_shard

    found = {}
    for structure in ("unstructured", "ffn"):
        plain = tiny_classifier("bert", layers=2, seed=3)
        sharded = deepcopy(plain)
        for layer in sharded.bert.encoder.layer:
            fully_shard(layer)
        fully_shard(sharded)
        callbacks = [GradualMagnitudePruningCallback(PruningConfig(sparsity=0.5, structure=structure, end_step=2))
                     for _ in range(2)]  # fmt: skip
        for callback, model in zip(callbacks, (plain, sharded)):
            callback.setup(model, 2)
            callback.update_masks(2)
        same_masks = digest_of(callbacks[0].masks) == digest_of(callbacks[1].masks) and all(
            torch.equal(a, b) for a, b in zip(callbacks[0].unit_masks, callbacks[1].unit_masks)
        )
        same_weights = digest_of(plain.state_dict()) == digest_of(gathered_model(sharded).state_dict())
        found[structure] = {"same_masks": same_masks, "same_weights": same_weights,
                            "sparsity": callbacks[1].current_sparsity}  # fmt: skip
    return found


def main(tokenizer_dir: str, out: str) -> None:
    force_fsdp_on_cpu()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    record = {
        "prune": prune_run(tokenizer, f"{out}/prune", True),  # the Trainer starts the process group
        "distill": distill_run(tokenizer, f"{out}/distill", True),
        "masks_on_full_weights": sharded_masks_match(),
        "world_size": torch.distributed.get_world_size(),
    }
    Path(out, f"rank{torch.distributed.get_rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:3])
