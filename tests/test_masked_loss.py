"""The masked loss: missing targets give exactly zero error and zero gradient."""

from __future__ import annotations

import torch

from train.masked_loss import complete_only_mse, masked_mse


def test_missing_targets_get_zero_gradient():
    torch.manual_seed(0)
    pred = torch.randn(4, 30, requires_grad=True)
    target = torch.randn(4, 30)
    mask = torch.rand(4, 30) > 0.4
    target[~mask] = float("nan")  # missing labels may be NaN: they must not leak in
    loss = masked_mse(pred, target, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert (pred.grad[~mask] == 0).all()
    assert (pred.grad[mask] != 0).all()


def test_masked_loss_ignores_whatever_the_missing_targets_hold():
    pred = torch.randn(3, 30)
    target = torch.randn(3, 30)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[1, 10:] = False
    other = target.clone()
    other[~mask] = 1e6
    assert masked_mse(pred, target, mask) == masked_mse(pred, other, mask)
    # mean over labelled entries only
    expected = ((pred - target)[mask] ** 2).mean()
    assert torch.allclose(masked_mse(pred, target, mask), expected)


def test_masked_equals_plain_mse_when_everything_is_labelled():
    pred, target = torch.randn(5, 30), torch.randn(5, 30)
    mask = torch.ones(5, 30, dtype=torch.bool)
    assert torch.allclose(masked_mse(pred, target, mask), torch.nn.functional.mse_loss(pred, target))


def test_complete_only_uses_only_complete_rows():
    pred, target = torch.randn(4, 30), torch.randn(4, 30)
    mask = torch.ones(4, 30, dtype=torch.bool)
    mask[0, 3] = False
    mask[2, :] = False
    expected = torch.nn.functional.mse_loss(pred[[1, 3]], target[[1, 3]])
    assert torch.allclose(complete_only_mse(pred, target, mask), expected)
