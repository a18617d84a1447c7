"""The one weight init and the one parameter count (omni_edu/model/weights.py)."""

import torch
from torch import nn

from omni_edu.model.weights import count_parameters, init_weights


def test_init_is_a_small_normal_with_zero_biases_and_leaves_norms_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1000, 64), nn.Linear(64, 512), nn.LayerNorm(512))
    with torch.no_grad():
        model[2].weight.fill_(3.0)
    model.apply(init_weights)
    for layer in model[:2]:
        assert abs(layer.weight.std().item() - 0.02) < 0.002
    assert torch.equal(model[1].bias, torch.zeros(512))
    assert torch.equal(model[2].weight, torch.full((512,), 3.0))


def test_count_counts_a_tied_matrix_once_and_can_leave_frozen_ones_out():
    embed, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    frozen = nn.Linear(4, 4)
    frozen.requires_grad_(False)
    model = nn.ModuleList([embed, head, frozen])
    assert count_parameters(model) == 10 * 4 + 4 * 4 + 4
    assert count_parameters(model, trainable_only=True) == 10 * 4
