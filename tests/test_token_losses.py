"""Token-level distillation losses against values computed by hand."""

import math

import pytest
import torch

from hfcompress.distillation import losses

# Teacher logits [0, 0] -> p = (0.5, 0.5); student logits [ln 3, 0] -> q = (0.75, 0.25).
TEACHER = torch.tensor([[0.0, 0.0]])
STUDENT = torch.tensor([[math.log(3.0), 0.0]])


def test_forward_kl_by_hand():
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p || q) = 0.5 ln(4/3)
    assert losses.forward_kl(STUDENT, TEACHER).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.143841, abs=1e-6)


def test_reverse_kl_by_hand():
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(q || p)
    assert losses.reverse_kl(STUDENT, TEACHER).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.130812, abs=1e-6)


@pytest.mark.parametrize("beta", [0.5, 0.1, 0.9])
def test_generalized_jsd_by_hand(beta):
    p, q = (0.5, 0.5), (0.75, 0.25)
    m = [beta * pi + (1 - beta) * qi for pi, qi in zip(p, q)]
    kl_pm = sum(pi * math.log(pi / mi) for pi, mi in zip(p, m))
    kl_qm = sum(qi * math.log(qi / mi) for qi, mi in zip(q, m))
    expected = beta * kl_pm + (1 - beta) * kl_qm
    assert losses.generalized_jsd(STUDENT, TEACHER, beta=beta).item() == pytest.approx(expected, abs=1e-6)
    if beta == 0.5:
        assert expected == pytest.approx(0.033822, abs=1e-6)


def test_temperature_softens_and_scales_by_t_squared():
    t = 2.0
    # At T = 2 the student's logits become [ln 3 / 2, 0]: q = (sqrt 3 / (sqrt 3 + 1), 1 / (sqrt 3 + 1)).
    q0 = math.sqrt(3) / (math.sqrt(3) + 1)
    expected = (0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / (1 - q0))) * t**2
    assert losses.forward_kl(STUDENT, TEACHER, temperature=t).item() == pytest.approx(expected, abs=1e-6)


def test_divergences_vanish_for_equal_distributions_and_are_per_token():
    logits = torch.randn(5, 11)
    for kind in losses.DIVERGENCES:
        values = losses.token_divergence(logits, logits.clone(), kind, temperature=1.5)
        assert values.shape == (5,)
        assert values.abs().max().item() < 1e-6


def test_next_token_cross_entropy_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    values = losses.next_token_cross_entropy(logits, torch.tensor([1, 0]))
    assert values.tolist() == pytest.approx([-math.log(0.25), -math.log(0.5)], abs=1e-6)


def test_jsd_beta_outside_the_open_interval_is_refused():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        losses.generalized_jsd(STUDENT, TEACHER, beta=1.0)
