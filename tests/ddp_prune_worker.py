"""Worker for test_pruning_ddp: trains a tiny model with the pruning callback under torchrun (gloo, CPU)
and writes each rank's mask digest, so the test can check every rank computed the same masks."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_classifier  # noqa: E402
from test_distillation_trainer import dataset  # noqa: E402

from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig  # noqa: E402


def main(tokenizer_dir: str, out: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    pruner = GradualMagnitudePruningCallback(PruningConfig(sparsity=0.7, end_step=6, update_frequency=2))
    args = TrainingArguments(output_dir=out, max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2,
                             report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0,
                             ddp_backend="gloo")  # fmt: skip
    trainer = Trainer(model=tiny_classifier("bert", layers=2, seed=0), args=args, train_dataset=dataset(tokenizer, 32),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[pruner])  # fmt: skip
    trainer.train()
    digest = hashlib.sha256()
    for name in sorted(pruner.masks):
        digest.update(pruner.masks[name].cpu().numpy().tobytes())
    rank = torch.distributed.get_rank()
    record = {"world_size": torch.distributed.get_world_size(), "digest": digest.hexdigest(),
              "sparsity": pruner.current_sparsity, "history": pruner.history}  # fmt: skip
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
