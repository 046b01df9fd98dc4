import pytest
import torch
from conftest import tiny_classifier

from hfcompress.errors import UsageError
from hfcompress.pruning.masks import check_two_four, prunable_modules, two_four_masks, unstructured_masks


def test_global_and_per_layer_thresholds_differ():
    weights = {"a": torch.tensor([1.0, -2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, -30.0, 40.0])}
    glob = unstructured_masks(weights, 0.5, "global")
    assert glob["a"].tolist() == [False] * 4 and glob["b"].tolist() == [True] * 4
    per = unstructured_masks(weights, 0.5, "per-layer")
    assert per["a"].tolist() == [False, False, True, True]
    assert per["b"].tolist() == [False, False, True, True]


def test_exact_count_with_ties():
    masks = unstructured_masks({"w": torch.ones(2, 4)}, 0.25, "global")
    assert int((~masks["w"]).sum()) == 2
    masks = unstructured_masks({"w": torch.zeros(3, 3)}, 0.5, "per-layer")
    assert int((~masks["w"]).sum()) == round(0.5 * 9)


def test_two_four_pattern_in_every_group():
    torch.manual_seed(0)
    weight = torch.randn(8, 16)
    keep = two_four_masks({"w": weight}, 0.5, "global")["w"]
    groups, values = keep.reshape(-1, 4), weight.abs().reshape(-1, 4)
    assert (groups.sum(dim=1) == 2).all()
    kept_min = torch.where(groups, values, torch.full_like(values, float("inf"))).min(dim=1).values
    dropped_max = torch.where(~groups, values, torch.full_like(values, -1.0)).max(dim=1).values
    assert (kept_min >= dropped_max).all()  # the two largest of each four stay


def test_two_four_gradual_only_drops_candidates():
    torch.manual_seed(1)
    weight = torch.randn(4, 32)
    final = two_four_masks({"w": weight}, 0.5, "per-layer")["w"]
    partial = two_four_masks({"w": weight}, 0.25, "per-layer")["w"]
    assert int((~partial).sum()) == 32
    assert not (~partial & final).any()  # everything dropped at 25% is also dropped at 50%


def test_two_four_needs_width_multiple_of_four():
    with pytest.raises(UsageError, match="multiples of 4, but w has 6"):
        check_two_four({"w": torch.ones(4, 6)})


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra"])
def test_default_targets_are_block_linears_only(model_type):
    model = tiny_classifier(model_type, layers=4)
    names = prunable_modules(model)
    assert len(names) == 6 * 4  # q, k, v, attention output, FFN in, FFN out, in each of 4 blocks
    assert all(isinstance(m, torch.nn.Linear) for m in names.values())
    assert not any("classifier" in n or "embeddings" in n or "pre_classifier" in n for n in names)


def test_regex_targets_can_include_the_classifier():
    model = tiny_classifier("bert", layers=2)
    names = prunable_modules(model, r"classifier|intermediate")
    assert set(names) == {
        "classifier",
        "bert.encoder.layer.0.intermediate.dense",
        "bert.encoder.layer.1.intermediate.dense",
    }
    with pytest.raises(UsageError, match="No prunable Linear layers match"):
        prunable_modules(model, r"nothing_like_this")
