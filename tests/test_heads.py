"""Output heads: sampling rules, the head factory, and the code head."""

import pytest
import torch

from omni_edu.model.heads import (
    HEAD_KINDS,
    CodeHead,
    FlowHead,
    LinearHead,
    RegressionHead,
    build_head,
    sample_token,
)
from omni_edu.model.heads.flow import FlowHeadConfig


def test_greedy_picks_the_largest_logit():
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    assert sample_token(logits).tolist() == [1, 0]
    assert sample_token(logits, temperature=1.0, top_k=1).tolist() == [1, 0]


def test_top_k_never_picks_outside_the_k_best():
    logits = torch.tensor([[5.0, 4.0, -9.0, -9.0]]).repeat(500, 1)
    ids = sample_token(logits, temperature=2.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(ids.tolist()) == {0, 1}


def test_temperature_sampling_is_reproducible_and_follows_the_softmax():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(4000, 1)
    draw = [sample_token(logits, 1.0, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])
    freq = torch.bincount(draw[0], minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
    ],
)
def test_sampling_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_token(torch.zeros(2, 3), **kwargs)
    with pytest.raises(ValueError, match="logits"):
        sample_token(torch.zeros(3))


def test_build_head_makes_every_kind():
    flow = FlowHeadConfig(token_dim=1, cond_dim=1, width=16, depth=1, shift=0.5, scale=0.5)
    made = {kind: build_head(kind, 8, token_dim=6, vocab_size=5, flow=flow) for kind in HEAD_KINDS}
    assert isinstance(made["linear"], LinearHead)
    assert isinstance(made["regression"], RegressionHead)
    assert isinstance(made["flow"], FlowHead) and made["flow"].config.token_dim == 6
    assert made["flow"].config.cond_dim == 8 and made["flow"].config.scale == 0.5
    assert isinstance(made["codes"], CodeHead) and made["codes"].discrete
    assert not any(made[k].discrete for k in ("linear", "regression", "flow"))
    cond = torch.randn(3, 8)
    assert made["codes"].sample(cond, steps=4).shape == (3,)  # other heads' options ignored
    for kind in ("linear", "regression", "flow"):
        assert made[kind].sample(cond, temperature=1.0).shape == (3, 6)
    with pytest.raises(ValueError, match="one of"):
        build_head("diffusion", 8, 6)
    with pytest.raises(ValueError, match="vocab_size"):
        build_head("codes", 8, 6)
    with pytest.raises(ValueError, match="token_dim"):
        build_head("flow", 8)


def test_code_head_learns_a_mapping():
    torch.manual_seed(0)
    head = CodeHead(4, 3)
    cond, ids = torch.eye(4)[:3], torch.tensor([2, 0, 1])
    optimizer = torch.optim.SGD(head.parameters(), lr=1.0)
    first = head.loss(ids, cond).item()
    for _ in range(50):
        optimizer.zero_grad()
        head.loss(ids, cond).backward()
        optimizer.step()
    assert head.loss(ids, cond).item() < 0.1 * first
    assert head.sample(cond).tolist() == [2, 0, 1]
