"""Territory-Aware Gated Loss (Syed et al. 2026): hand-computed values, gradients, and the off switch."""

import math

import pytest
import torch
from monai.losses import DiceCELoss

from aspects_research.losses import TerritoryAwareGatedLoss, tagl_penalty, tagl_volume


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_penalty_hand_computed_with_gate_and_weight():
    # Two locations; only the first passes the gate (0.8 > 0.1, 0.05 <= 0.1).
    p_bg = torch.tensor([[0.8, 0.05]], requires_grad=True)
    p_sg = torch.tensor([[0.2, 0.5]], requires_grad=True)
    value = tagl_penalty(p_bg, p_sg, tau=0.1)
    # c_bg = 0.425, c_sg = 0.35, w = softmax(c)[0] = sigmoid(0.075); penalty = w * 0.6 / 2 locations.
    w = _sigmoid(0.425 - 0.35)
    assert value.item() == pytest.approx(w * 0.6 / 2, rel=1e-6)
    value.backward()
    # d/dp_bg|bg - sg| = +1 at the gated location (bg > sg), 0 where the gate is shut; weight detached.
    assert p_bg.grad.tolist()[0] == pytest.approx([w / 2, 0.0], rel=1e-6)
    assert p_sg.grad.tolist()[0] == pytest.approx([-w / 2, 0.0], rel=1e-6)


def test_weight_favours_the_more_confident_level():
    # Same disagreement, BG more confident in the second case -> larger penalty.
    low = tagl_penalty(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.9]]), tau=0.1)
    high = tagl_penalty(torch.tensor([[0.9, 0.9]]), torch.tensor([[0.5, 0.5]]), tau=0.1)
    assert low.item() == pytest.approx(_sigmoid(-0.4) * 0.4, rel=1e-6)
    assert high.item() == pytest.approx(_sigmoid(0.4) * 0.4, rel=1e-6)


def test_consistent_or_ungated_levels_cost_nothing():
    same = torch.full((2, 3, 3), 0.7)
    assert tagl_penalty(same, same.clone(), tau=0.1).item() == 0.0
    quiet_bg = torch.full((1, 4), 0.05)  # no BG evidence: SG is free to differ
    assert tagl_penalty(quiet_bg, torch.full((1, 4), 0.9), tau=0.1).item() == 0.0


def test_volume_uses_the_slab_maxima():
    # (B=1, X=1, Y=2, Z=4); BG = planes 0..1, SG = planes 2..3.
    prob = torch.tensor([[[[0.1, 0.7, 0.3, 0.2], [0.0, 0.05, 0.6, 0.6]]]])
    # slab maxima: BG [0.7, 0.05], SG [0.3, 0.6]; gate [1, 0]; c_bg = 0.375, c_sg = 0.45.
    expected = _sigmoid(0.375 - 0.45) * 0.4 / 2
    assert tagl_volume(prob, (0, 2), (2, 4), tau=0.1).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="slab"):
        tagl_volume(prob, (0, 2), (2, 5), tau=0.1)


def _batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4, 6, requires_grad=True)
    target = (torch.rand(2, 1, 4, 4, 6) > 0.7).float()
    return logits, target


def test_switched_off_equals_base_loss():
    logits, target = _batch()
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    expected = base(logits, target).item()
    for off in (
        TerritoryAwareGatedLoss(base, (0, 3), (3, 6), lam=0.5, enabled=False),
        TerritoryAwareGatedLoss(base, (0, 3), (3, 6), lam=0.0),
        TerritoryAwareGatedLoss(base, None, None, lam=0.5),
    ):
        assert off(logits, target).item() == expected


def test_switched_on_adds_lambda_times_tagl_and_gradients_reach_the_logits():
    logits, target = _batch()
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    loss = TerritoryAwareGatedLoss(base, (0, 3), (3, 6), lam=0.5, tau=0.1)
    total = loss(logits, target)
    prob = torch.softmax(logits, dim=1)[:, 1]
    term = tagl_volume(prob, (0, 3), (3, 6), 0.1)
    assert term.item() > 0
    assert total.item() == pytest.approx(base(logits, target).item() + 0.5 * term.item(), rel=1e-6)
    assert loss.last_tagl == pytest.approx(term.item(), rel=1e-6)
    # The TAGL part alone back-propagates into the network output.
    logits.grad = None
    (total - base(logits, target)).backward()
    assert logits.grad is not None and logits.grad.abs().sum().item() > 0


def test_bad_parameters_are_rejected():
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    with pytest.raises(ValueError):
        TerritoryAwareGatedLoss(base, (0, 1), (1, 2), lam=-1.0)
    with pytest.raises(ValueError):
        TerritoryAwareGatedLoss(base, (0, 1), (1, 2), tau=1.5)
