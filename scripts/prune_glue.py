"""A plain transformers fine-tuning script for a GLUE task, pruned by adding one callback.

Everything is ordinary `transformers` except the three marked lines: that is all it takes to add
gradual magnitude pruning to your own training script.

    python scripts/prune_glue.py --model path/to/model --task sst2 --data-dir ../shared/data/glue \
        --output-dir out/pruned --sparsity 0.8 --max-steps 200
"""

import argparse

from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from hfcompress.data import get_task, load_glue
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig, make_permanent  # (1) import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--max-train-samples", type=int, default=None)
    args = parser.parse_args()

    task = get_task(args.task)
    data = load_glue(task, data_dir=args.data_dir, max_train_samples=args.max_train_samples)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=task.num_labels)
    train = data["train"].map(
        lambda batch: tokenizer(*[batch[c] for c in task.text_columns], truncation=True, max_length=128),
        batched=True,
    )
    pruner = GradualMagnitudePruningCallback(PruningConfig(sparsity=args.sparsity))  # (2) make the callback
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=args.output_dir, max_steps=args.max_steps, report_to="none"),
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[pruner],  # (3) add it to the Trainer
    )
    trainer.train()
    make_permanent(pruner, trainer.model)  # optional here: masks are already folded into the weights
    trainer.model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    print(f"sparsity of the pruned layers: {pruner.current_sparsity:.3f}")


if __name__ == "__main__":
    main()
