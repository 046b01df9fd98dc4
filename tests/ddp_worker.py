"""Worker for test_ddp: trains a tiny model under torchrun (gloo, CPU) and writes a digest per rank,
so the test can check every rank ended with the same state. Modes: `prune` (the pruning callback's masks)
and `distill` (the DistillationTrainer's hidden-state projection, which lives outside DDP's model)."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_classifier  # noqa: E402
from test_distillation_trainer import dataset  # noqa: E402

from hfcompress.distillation import DistillationArguments, DistillationTrainer  # noqa: E402
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig  # noqa: E402

ARGS = dict(max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", use_cpu=True,
            disable_tqdm=True, save_strategy="no", seed=0, ddp_backend="gloo")  # fmt: skip


def digest_of(tensors: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(tensors[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def distill(tokenizer, out: str) -> dict:
    teacher = tiny_classifier("bert", layers=4, hidden=32, seed=0)
    student = tiny_classifier("bert", layers=2, hidden=16, seed=1)
    args = DistillationArguments(output_dir=out, hidden_weight=1.0, **ARGS)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset(tokenizer, 32),
                                  processing_class=tokenizer,
                                  data_collator=DataCollatorWithPadding(tokenizer))  # fmt: skip
    before = digest_of(dict(trainer.hidden_projection.named_parameters()))
    trainer.train()
    after = dict(trainer.hidden_projection.named_parameters())
    return {"digest": digest_of(after), "changed": digest_of(after) != before,
            "student": digest_of(dict(trainer.model.named_parameters()))}  # fmt: skip


def prune(tokenizer, out: str) -> dict:
    pruner = GradualMagnitudePruningCallback(PruningConfig(sparsity=0.7, end_step=6, update_frequency=2))
    trainer = Trainer(model=tiny_classifier("bert", layers=2, seed=0), args=TrainingArguments(output_dir=out, **ARGS),
                      train_dataset=dataset(tokenizer, 32), processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[pruner])  # fmt: skip
    trainer.train()
    return {"digest": digest_of(pruner.masks), "sparsity": pruner.current_sparsity, "history": pruner.history}


def main(mode: str, tokenizer_dir: str, out: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    record = {"prune": prune, "distill": distill}[mode](tokenizer, out)
    record["world_size"] = torch.distributed.get_world_size()
    Path(out, f"rank{torch.distributed.get_rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
