import pytest
import torch
from conftest import tiny_classifier
from transformers import AutoModelForSequenceClassification

from hfcompress.errors import UsageError
from hfcompress.pruning.ffn import (
    apply_neuron_masks,
    check_ffn_target,
    find_feed_forwards,
    intermediate_size,
    neuron_masks,
    shrink_feed_forwards,
)

INPUTS = {"input_ids": torch.randint(100, 1000, (2, 10)), "attention_mask": torch.ones(2, 10, dtype=torch.long)}


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "distilbert"])
def test_shrunk_model_matches_masked_model_and_reloads(model_type, tmp_path):
    model = tiny_classifier(model_type, layers=3)
    ffns = find_feed_forwards(model)
    assert len(ffns) == 3 and all(f.up[0].out_features == 64 and f.down.in_features == 64 for f in ffns)
    masks = neuron_masks(ffns, removed=40)
    assert all(int(m.sum()) == 24 for m in masks)
    apply_neuron_masks(ffns, masks)
    with torch.no_grad():
        masked = model(**INPUTS).logits

    assert shrink_feed_forwards(model, masks) == 24
    assert intermediate_size(model.config)[1] == 24
    with torch.no_grad():
        assert torch.allclose(model(**INPUTS).logits, masked, atol=1e-5)
    params_small = sum(p.numel() for p in model.parameters())

    model.save_pretrained(tmp_path)
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert sum(p.numel() for p in reloaded.parameters()) == params_small
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(**INPUTS).logits, masked, atol=1e-5)


def test_least_important_neurons_go_first():
    model = tiny_classifier("bert", layers=1)
    ffn = find_feed_forwards(model)[0]
    with torch.no_grad():
        ffn.up[0].weight[5] *= 0.001
        ffn.down.weight[:, 5] *= 0.001
    assert not neuron_masks([ffn], removed=1)[0][5]


def test_ffn_target_checks():
    model = tiny_classifier("bert", layers=1)
    assert check_ffn_target(model, 0.5, None) == 32
    assert check_ffn_target(model, 0.9, 16) == 16
    with pytest.raises(UsageError, match="--ffn-size 128 must be between 1 and the current FFN size 64"):
        check_ffn_target(model, 0.5, 128)
    with pytest.raises(UsageError, match="--ffn-size 64 must be between"):
        check_ffn_target(model, 0.5, 64)
