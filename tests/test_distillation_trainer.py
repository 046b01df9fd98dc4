import pytest
import torch
from conftest import tiny_classifier
from datasets import Dataset
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding

from hfcompress.distillation import DistillationArguments, DistillationTrainer, build_student_from_teacher
from hfcompress.errors import UsageError

SENTENCES = [
    "a gripping and clever film", "the plot was dull", "utterly charming", "a tedious mess of a movie",
    "the acting was superb but the script was weak", "not bad at all", "boring", "a stunning achievement",
]  # fmt: skip


def dataset(tokenizer, n=8):
    rows = {"sentence": [SENTENCES[i % len(SENTENCES)] for i in range(n)], "label": [i % 2 for i in range(n)]}
    return Dataset.from_dict(rows).map(lambda b: tokenizer(b["sentence"]), batched=True, remove_columns=["sentence"])


def make_args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    return DistillationArguments(**{**defaults, **kwargs})


def make_trainer(tmp_path, tokenizer, student=None, teacher=None, **kwargs):
    teacher = teacher or tiny_classifier("bert", layers=4, seed=0)
    student = student or build_student_from_teacher(teacher, [0, 3])
    return DistillationTrainer(
        model=student,
        teacher=teacher,
        args=make_args(tmp_path, **kwargs),
        train_dataset=dataset(tokenizer),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )


def trained_params(tmp_path, tokenizer, **kwargs):
    trainer = make_trainer(tmp_path, tokenizer, optim="sgd", learning_rate=0.5, max_steps=1, **kwargs)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def test_gradient_accumulation_2x4_equals_batch_8(tmp_path, tokenizer):
    # SGD makes the update proportional to the loss scale, so a wrongly scaled accumulated loss would show.
    weights = dict(hidden_weight=1.0, cosine_weight=0.5, attention_weight=1.0)
    full = trained_params(tmp_path / "a", tokenizer, per_device_train_batch_size=8, **weights)
    accumulated = trained_params(
        tmp_path / "b", tokenizer, per_device_train_batch_size=4, gradient_accumulation_steps=2, **weights
    )
    start = build_student_from_teacher(tiny_classifier("bert", layers=4, seed=0), [0, 3])
    moved = 0
    for name, value in full.items():
        assert torch.allclose(value, accumulated[name], atol=1e-5), name
        moved += not torch.allclose(value, dict(start.named_parameters())[name])
    assert moved > 10  # the step really changed the student


def test_teacher_frozen_and_not_saved(tmp_path, tokenizer):
    teacher = tiny_classifier("bert", layers=4, seed=0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        teacher=teacher,
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        hidden_weight=1.0,
    )
    student_keys = set(trainer.model.state_dict())
    trainer.train()
    assert not trainer.teacher.training
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in trainer.teacher.state_dict().items())
    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    assert set(saved) <= student_keys
    assert saved["bert.encoder.layer.1.output.dense.weight"].shape == (32, 64)
    assert "bert.encoder.layer.2.output.dense.weight" not in saved  # only the student's 2 layers


def test_projection_trains_when_widths_differ(tmp_path, tokenizer):
    teacher = tiny_classifier("bert", layers=4, hidden=32, seed=0)
    student = tiny_classifier("bert", layers=2, hidden=16, seed=1)
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        student=student,
        teacher=teacher,
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        hidden_weight=1.0,
        cosine_weight=1.0,
        attention_weight=1.0,
    )
    projection_before = trainer.hidden_projection.weight.detach().clone()
    trainer.train()
    assert trainer.layer_map == {0: 1, 1: 3}
    assert not torch.allclose(projection_before, trainer.hidden_projection.weight)
    assert trainer.hidden_projection.weight.grad is None  # zeroed after each optimizer step, as the student's
    assert "hidden_projection" not in " ".join(trainer.model.state_dict())


def test_projection_survives_checkpoint_resume(tmp_path, tokenizer):
    def run(resume=None):
        teacher = tiny_classifier("bert", layers=4, hidden=32, seed=0)
        student = tiny_classifier("bert", layers=2, hidden=16, seed=1)
        trainer = make_trainer(tmp_path, tokenizer, student=student, teacher=teacher, max_steps=4,
                               per_device_train_batch_size=4, learning_rate=1e-2, hidden_weight=1.0,
                               save_strategy="steps", save_steps=2)  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer.hidden_projection.weight.detach().clone(), trainer.model.classifier.weight.detach().clone()

    projection, head = run()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert set(load_file(checkpoint / "hidden_projection.safetensors")) == {"weight", "bias"}
    resumed_projection, resumed_head = run(resume=str(checkpoint))
    torch.testing.assert_close(resumed_projection, projection)
    torch.testing.assert_close(resumed_head, head)


def test_losses_are_logged(tmp_path, tokenizer):
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        max_steps=2,
        logging_steps=1,
        per_device_train_batch_size=4,
        hidden_weight=1.0,
        attention_weight=1.0,
        cosine_weight=1.0,
    )
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"loss_distill", "loss_hard", "loss_hidden", "loss_cosine", "loss_attention"} <= logged


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=0.0), "temperature must be greater than 0"),
        (dict(temperature=-1.0), "temperature must be greater than 0"),
        (dict(distill_weight=-0.1), "distill_weight is negative"),
        (dict(distill_weight=0.0, hard_label_weight=0.0), "all of them are 0"),
        (dict(layer_map="0-1"), "--layer_map must look like"),
    ],
)
def test_impossible_hyperparameters(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_args(tmp_path, **kwargs)


def test_layer_map_out_of_range(tmp_path, tokenizer):
    with pytest.raises(UsageError, match="out of range"):
        make_trainer(tmp_path, tokenizer, hidden_weight=1.0, layer_map="0:1,1:7")


@pytest.mark.parametrize(
    "student_kwargs, message",
    [(dict(vocab_size=1000), "vocabularies differ"), (dict(num_labels=3), "labels but the student has")],
)
def test_incompatible_student(tmp_path, tokenizer, student_kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_trainer(tmp_path, tokenizer, student=tiny_classifier("bert", layers=2, **student_kwargs))
