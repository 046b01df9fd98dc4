import pytest
import torch
from conftest import tiny_classifier
from transformers import AutoModelForSequenceClassification

from hfcompress.architecture import find_layer_list, num_layers
from hfcompress.distillation import build_student_from_teacher, parse_student_layers
from hfcompress.errors import UsageError


@pytest.mark.parametrize(
    "spec, teacher_layers, expected",
    [
        ("6", 12, [0, 2, 4, 7, 9, 11]),
        (6, 12, [0, 2, 4, 7, 9, 11]),
        ("3", 6, [0, 3, 5]),
        ("2", 4, [0, 3]),
        ("1", 6, [5]),
        ("12", 12, list(range(12))),
        ("0,2,4,7,9,11", 12, [0, 2, 4, 7, 9, 11]),
        ("5, 1", 6, [1, 5]),
    ],
)
def test_parse_student_layers(spec, teacher_layers, expected):
    assert parse_student_layers(spec, teacher_layers) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0", "between 1 and"),
        ("13", "between 1 and"),
        ("a,b", "must be a count"),
        ("1,1", "distinct"),
        ("0,12", "between 0 and 11"),
    ],
)
def test_parse_student_layers_rejects(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_student_layers(spec, 12)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "distilbert"])
def test_student_copies_teacher_layers_and_reloads(model_type, tmp_path):
    teacher = tiny_classifier(model_type, layers=4)
    student = build_student_from_teacher(teacher, [1, 3])

    _, _, teacher_stack = find_layer_list(teacher)
    _, _, student_stack = find_layer_list(student)
    assert len(student_stack) == 2 and num_layers(student.config) == 2
    for s_index, t_index in ((0, 1), (1, 3)):
        t_state, s_state = teacher_stack[t_index].state_dict(), student_stack[s_index].state_dict()
        assert t_state.keys() == s_state.keys()
        assert all(torch.equal(t_state[k], s_state[k]) for k in t_state)
    # The teacher itself is untouched.
    assert len(teacher_stack) == 4 and num_layers(teacher.config) == 4

    student.save_pretrained(tmp_path)
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    inputs = {"input_ids": torch.randint(100, 1000, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    with torch.no_grad():
        assert torch.allclose(student(**inputs).logits, reloaded.eval()(**inputs).logits, atol=1e-6)
    assert not torch.allclose(student(**inputs).logits, teacher(**inputs).logits)
