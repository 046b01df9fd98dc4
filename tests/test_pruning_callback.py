"""The callback inside a plain transformers.Trainer, on tiny models."""

import pytest
import torch
from conftest import tiny_classifier
from test_distillation_trainer import dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainerCallback

from hfcompress.distillation import DistillationArguments, DistillationTrainer
from hfcompress.pruning import GradualMagnitudePruningCallback, PruningConfig, make_permanent


class Observer(TrainerCallback):
    """Measures the real zero fraction of the pruned weights after every optimizer step."""

    def __init__(self, pruner):
        self.pruner, self.measured, self.revived = pruner, {}, 0

    def on_step_end(self, args, state, control, **kwargs):
        if not self.pruner.modules:  # structured pruning: nothing to observe here
            return
        weights = [m.weight for m in self.pruner.modules.values()]
        zeros = sum(int((w == 0).sum()) for w in weights)
        self.measured[state.global_step] = zeros / sum(w.numel() for w in weights)
        for name, keep in self.pruner.masks.items():
            self.revived += int((self.pruner.modules[name].weight[~keep] != 0).sum())


def train(tmp_path, tokenizer, config, model=None, steps=12, callbacks=(), resume=None, **kwargs):
    model = model or tiny_classifier("bert", layers=2, seed=0)
    pruner = GradualMagnitudePruningCallback(config)
    observer = Observer(pruner)
    args = dict(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        weight_decay=0.1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
    )
    args.update(kwargs)
    trainer = Trainer(model=model, args=DistillationArguments(**args), train_dataset=dataset(tokenizer, 16),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[pruner, observer, *callbacks])  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return trainer, pruner, observer


@pytest.mark.parametrize("schedule", ["cubic", "linear", "constant"])
def test_exact_sparsity_at_every_step(tmp_path, tokenizer, schedule):
    config = PruningConfig(sparsity=0.75, start_step=2, end_step=9, update_frequency=3, schedule=schedule)
    _, pruner, observer = train(tmp_path, tokenizer, config)
    total = sum(m.weight.numel() for m in pruner.modules.values())
    for step in range(1, 13):
        expected = round(config.sparsity_at(step, 9) * total) / total
        assert observer.measured[step] == pytest.approx(expected, abs=1e-9), step
    assert observer.revived == 0  # AdamW momentum and weight decay never revive a pruned weight
    assert [s for s, _ in pruner.history] == ([2, 5, 8, 9] if schedule != "constant" else [2, 5, 8, 9])


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, tokenizer):
    config = PruningConfig(sparsity=0.5, end_step=4, update_frequency=2)
    _, pruner, observer = train(tmp_path, tokenizer, config, steps=6, gradient_accumulation_steps=2)
    assert [s for s, _ in pruner.history] == [0, 2, 4]
    assert observer.measured[6] == pytest.approx(0.5)


def test_per_layer_scope_gives_every_layer_the_target(tmp_path, tokenizer):
    _, pruner, _ = train(tmp_path, tokenizer, PruningConfig(sparsity=0.6, end_step=4, scope="per-layer"), steps=5)
    for module in pruner.modules.values():
        assert float((module.weight == 0).float().mean()) == pytest.approx(0.6, abs=1 / module.weight.numel())


def test_two_four_in_trainer(tmp_path, tokenizer):
    _, pruner, _ = train(tmp_path, tokenizer, PruningConfig(sparsity=0.5, structure="2:4", end_step=6), steps=8)
    for module in pruner.modules.values():
        assert ((module.weight != 0).reshape(-1, 4).sum(dim=1) == 2).all()


def test_saved_model_reloads_with_same_logits_and_no_extra_keys(tmp_path, tokenizer):
    trainer, pruner, _ = train(tmp_path, tokenizer, PruningConfig(sparsity=0.8, end_step=6), steps=8)
    model = trainer.model
    make_permanent(pruner, model)
    model.save_pretrained(tmp_path / "saved")
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert set(reloaded.state_dict()) == set(tiny_classifier("bert", layers=2).state_dict())
    inputs = tokenizer(["a gripping film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model.eval()(**inputs).logits, reloaded.eval()(**inputs).logits, atol=1e-6)
    weight = reloaded.bert.encoder.layer[0].intermediate.dense.weight
    assert float((weight == 0).float().mean()) > 0.5


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_gives_the_same_masks_as_an_uninterrupted_run(tmp_path, tokenizer):
    config = dict(sparsity=0.7, end_step=8, update_frequency=2)
    save = dict(save_strategy="steps", save_steps=5)
    full, full_pruner, _ = train(tmp_path / "full", tokenizer, PruningConfig(**config), steps=10, **save)

    train(tmp_path / "resumed", tokenizer, PruningConfig(**config), steps=10, callbacks=[StopAt(5)], **save)
    checkpoint = tmp_path / "resumed" / "checkpoint-5"
    assert (checkpoint / "pruning_masks.safetensors").is_file() and (checkpoint / "pruning_state.json").is_file()
    resumed, resumed_pruner, _ = train(tmp_path / "resumed", tokenizer, PruningConfig(**config), steps=10,
                                       resume=str(checkpoint), **save)  # fmt: skip
    assert resumed.state.global_step == 10
    assert [s for s, _ in resumed_pruner.history] == [s for s, _ in full_pruner.history]
    for name, mask in full_pruner.masks.items():
        assert torch.equal(mask, resumed_pruner.masks[name]), name
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_prune_while_distilling(tmp_path, tokenizer):
    teacher = tiny_classifier("bert", layers=2, seed=0)
    student = tiny_classifier("bert", layers=2, seed=0)
    pruner = GradualMagnitudePruningCallback(PruningConfig(sparsity=0.9, end_step=6, update_frequency=2))
    args = DistillationArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4,
                                 report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no",
                                 hidden_weight=1.0)  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset(tokenizer, 16),
                                  processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                                  callbacks=[pruner])  # fmt: skip
    trainer.train()
    assert pruner.current_sparsity == pytest.approx(0.9, abs=1e-4)
    assert all(p.ne(0).all() for n, p in teacher.named_parameters() if "encoder" in n and n.endswith("weight"))


def test_end_step_past_the_run_is_refused_before_training(tmp_path, tokenizer):
    from hfcompress.errors import UsageError

    with pytest.raises(UsageError, match=r"--end-step 50 is past the run's last step \(12\)"):
        train(tmp_path, tokenizer, PruningConfig(sparsity=0.5, end_step=50))
