"""``check_module``: a module the learner built, checked against the reference's weights.

A tiny pre-norm block stands in for the reference (the tool is tested on its own, not on
the course's model), and each plausible wrong module below differs from it in one way a
learner gets wrong: the residual, the norm's place, the mask, the scale, a transposed
weight, a parameter's name, a detached branch. Each is rejected with a message that names
what differed. The course's own decoder block passes against itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from omni_edu import grading
from omni_edu.grading import check_module, learner_module_or_reference


@dataclass
class TinyConfig:
    d: int = 8
    hidden: int = 16


class TinyBlock(nn.Module):
    """The reference: ``x + attend(norm1(x))``, then ``x + mlp(norm2(x))``; True = may attend."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d)
        self.qkv = nn.Linear(config.d, 3 * config.d, bias=False)
        self.out = nn.Linear(config.d, config.d, bias=False)
        self.norm2 = nn.LayerNorm(config.d)
        self.fc1 = nn.Linear(config.d, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.d)

    def scores(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return s.masked_fill(~mask, float("-inf"))

    def attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.out(self.scores(q, k, mask).softmax(-1) @ v)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attend(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


def causal(g: torch.Generator, batch: int = 2, seq: int = 5) -> tuple:
    x = torch.randn(batch, seq, 8, generator=g)
    return x, torch.ones(seq, seq, dtype=torch.bool).tril()


def padded(g: torch.Generator) -> tuple:
    """Causal, and the last two positions of the second document are padding."""
    x, mask = causal(g, 2, 6)
    mask = mask.expand(2, 6, 6).clone()
    mask[1, :, 4:] = False
    mask[1, 4:, :] = torch.eye(6, dtype=torch.bool)[4:]  # padding attends to itself
    return x, mask


INPUTS = {"causal": causal, "one short document": lambda g: causal(g, 1, 3), "padded": padded}


def check(learner, **options):
    return check_module(learner, TinyBlock, TinyConfig(), INPUTS, name="TinyBlock", **options)


@pytest.fixture
def lenient(monkeypatch):
    """Checks report instead of raising (the notebook behaviour)."""
    monkeypatch.setenv(grading.STRICT_ENV, "0")


# === plausible wrong modules ======================================================


class NoAttentionResidual(TinyBlock):
    # Plausible mistake: the attention branch replaces the stream instead of adding to it.
    def forward(self, x, mask):
        x = self.attend(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PostNorm(TinyBlock):
    # Plausible mistake: the original transformer's order, norm after the residual sum.
    def forward(self, x, mask):
        x = self.norm1(x + self.attend(x, mask))
        return self.norm2(x + self.mlp(x))


class InvertedMask(TinyBlock):
    # Plausible mistake: reads True as "hidden" (the opposite of the course's convention).
    def scores(self, q, k, mask):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return s.masked_fill(mask & ~torch.eye(mask.shape[-1], dtype=torch.bool), float("-inf"))


class AlwaysCausal(TinyBlock):
    # Plausible mistake: builds its own causal mask and ignores the one it is given.
    def scores(self, q, k, mask):
        n = q.shape[-2]
        return super().scores(q, k, torch.ones(n, n, dtype=torch.bool).tril())


class NoScale(TinyBlock):
    # Plausible mistake: forgets to divide the scores by sqrt(head width).
    def scores(self, q, k, mask):
        return (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))


class TransposedWeight(TinyBlock):
    # Plausible mistake: its own (in, out) weight for the MLP's first layer, x @ W.
    def __init__(self, config):
        super().__init__(config)
        del self.fc1
        self.fc1 = nn.Module()
        self.fc1.weight = nn.Parameter(torch.randn(config.d, config.hidden))
        self.fc1.bias = nn.Parameter(torch.zeros(config.hidden))

    def mlp(self, x):
        return self.fc2(F.gelu(x @ self.fc1.weight + self.fc1.bias))


class RenamedNorms(TinyBlock):
    # Plausible mistake: its own names for the norms (attn_norm, mlp_norm).
    def __init__(self, config):
        super().__init__(config)
        self.attn_norm, self.mlp_norm = self.norm1, self.norm2
        del self.norm1, self.norm2

    def forward(self, x, mask):
        x = x + self.attend(self.attn_norm(x), mask)
        return x + self.mlp(self.mlp_norm(x))


class DetachedMlp(TinyBlock):
    # Plausible mistake: right numbers, but the MLP branch is cut from the graph.
    def forward(self, x, mask):
        x = x + self.attend(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x)).detach()


class UnusedBias(TinyBlock):
    # Plausible mistake: the output projection gets a bias the reference does not have.
    def __init__(self, config):
        super().__init__(config)
        self.out = nn.Linear(config.d, config.d, bias=True)


# === tests ========================================================================


def test_the_reference_passes_against_itself(lenient):
    result = check(TinyBlock)
    assert result.passed and result.n_passed == 3
    assert "PASSED" in str(result) and "3 cases" in str(result)


def test_a_factory_passes_like_a_class(lenient):
    assert check(lambda config: TinyBlock(config)).passed


def test_the_learners_own_initial_weights_do_not_matter(lenient):
    class OddInit(TinyBlock):
        def __init__(self, config):
            super().__init__(config)
            for p in self.parameters():
                nn.init.constant_(p, 0.3)

    assert check(OddInit).passed


@pytest.mark.parametrize(
    "wrong, kind, words",
    [
        (NoAttentionResidual, "values", ["output", "max abs difference"]),
        (PostNorm, "values", ["output", "max abs difference"]),
        (InvertedMask, "values", ["output", "max abs difference"]),
        (AlwaysCausal, "values", ["padded", "output"]),
        (NoScale, "values", ["output", "max abs difference"]),
        (TransposedWeight, "weights", ["'fc1.weight' should be (16, 8)", "transposed"]),
        (RenamedNorms, "weights", ["no 'norm1.weight'", "'attn_norm.weight'", "by name"]),
        (
            DetachedMlp,
            "gradient",
            ["outputs match", "'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias' get no"],
        ),
        (UnusedBias, "weights", ["the reference has no 'out.bias'"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_plausible_wrong_module_fails_and_says_what_differed(lenient, wrong, kind, words):
    result = check(wrong)
    assert result.status == grading.FAILED, str(result)
    bad = result.first_failure()
    assert bad.kind == kind, str(result)
    for word in words:
        assert word in str(result), f"{word!r} not in:\n{result}"
    assert result.hint  # a hint aimed at the failure


def test_a_wrong_gradient_with_right_outputs_is_caught_on_a_parameter(lenient):
    class HalfGradient(TinyBlock):
        # Outputs match (x/2 + x/2 detached = x), but fc2 sees half its gradient.
        def mlp(self, x):
            y = super().mlp(x)
            return y / 2 + (y / 2).detach()

    result = check(HalfGradient)
    assert result.first_failure().kind == "gradient"
    assert "the outputs match, but the gradient of parameter" in str(result)


def test_input_gradients_are_compared(lenient):
    class StopsInputGradient(TinyBlock):
        def forward(self, x, mask):
            return super().forward(x.detach(), mask)

    result = check(StopsInputGradient)
    assert result.status == grading.FAILED and "input 0" in str(result)


def test_the_stub_is_not_implemented_even_in_strict_mode(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")

    class Stub(nn.Module):
        def __init__(self, config):
            super().__init__()
            raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it

    class HandWritten(TinyBlock):
        def forward(self, x, mask):
            raise NotImplementedError

    for stub in (Stub, HandWritten):
        result = check(stub)
        assert result.status == grading.NOT_IMPLEMENTED and "NOT IMPLEMENTED" in str(result)


def test_a_torch_not_implemented_error_is_an_error_not_a_stub(lenient):
    class Bitwise(TinyBlock):
        def forward(self, x, mask):
            return torch.bitwise_and(x, x)  # NotImplementedError for floats, from torch

    result = check(Bitwise)
    assert result.status == grading.ERROR, str(result)


def test_an_error_in_the_learners_module_shows_their_line(lenient):
    class Typo(TinyBlock):
        def forward(self, x, mask):
            return self.atend(x, mask)

    result = check(Typo)
    assert result.status == grading.ERROR
    assert "AttributeError" in str(result) and "self.atend(x, mask)" in str(result)


def test_a_factory_that_builds_no_module_fails_with_a_message(lenient):
    result = check(lambda config: "a block")
    assert result.status == grading.FAILED and "should build a torch.nn.Module" in str(result)


def test_strict_mode_raises_on_a_wrong_module(monkeypatch):
    monkeypatch.setenv(grading.STRICT_ENV, "1")
    with pytest.raises(grading.CheckFailed, match="TinyBlock"):
        check(NoScale)


def test_learner_module_or_reference_trains_what_passed(lenient):
    passed, failed = check(TinyBlock), check(NoScale)
    factory, note = learner_module_or_reference(passed, NoScale, TinyBlock)
    assert factory is NoScale and "your own" in note
    factory, note = learner_module_or_reference(failed, NoScale, TinyBlock)
    assert factory is TinyBlock and "reference" in note and "does not pass" in note


def test_the_course_decoder_block_passes_against_itself(lenient):
    from omni_edu.model.rope import rope_angles, rope_cos_sin, rope_frequencies
    from omni_edu.model.transformer import Block, DecoderConfig

    config = DecoderConfig(d_model=16, n_layers=1, n_heads=2)

    def inputs(batch, seq):
        def make(g):
            angles = rope_angles(torch.arange(seq)[None].expand(batch, seq), rope_frequencies(8))
            cos, sin = rope_cos_sin(angles)
            return torch.randn(batch, seq, 16, generator=g), cos, sin

        return make

    def forward(block, x, cos, sin):
        return block(x, cos=cos, sin=sin, mask=torch.ones(x.shape[1], x.shape[1]).tril().bool())[0]

    result = check_module(
        Block, Block, config, [inputs(2, 5), inputs(1, 3)], forward=forward, input_grads=[0]
    )
    assert result.passed, str(result)


def test_a_check_without_hints_leaves_a_lessons_hints_of_the_same_name_alone(lenient):
    from omni_edu.lessons.interleaved_autoregression.core_build import DECODER_BLOCK

    # The generic hints carry the reference's name ("Block", "TinyBlock"): once they replaced
    # lesson 02's registered ones, and its exercise's stub got the wrong nudge.
    check_module(TinyBlock, TinyBlock, TinyConfig(), INPUTS, name=DECODER_BLOCK.check)
    assert grading.hints._HINTS[DECODER_BLOCK.check] is DECODER_BLOCK
    assert grading.recipe(DECODER_BLOCK.check).text == DECODER_BLOCK.recipe


def test_a_buffer_of_the_learners_own_is_allowed_but_a_missing_one_is_not(lenient):
    class CachesItsMask(TinyBlock):
        def __init__(self, config):
            super().__init__(config)
            self.register_buffer("causal", torch.ones(64, 64, dtype=torch.bool).tril())

    assert check(CachesItsMask).passed

    class WithStatistics(TinyBlock):  # a reference that keeps a running buffer
        def __init__(self, config):
            super().__init__(config)
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x, mask):
            self.seen += x.shape[0]
            return super().forward(x, mask)

    result = check_module(TinyBlock, WithStatistics, TinyConfig(), INPUTS)
    assert result.status == grading.FAILED and "your module has no 'seen'" in str(result)


def test_a_buffer_that_changes_differently_in_the_forward_pass_fails(lenient):
    class Counts(TinyBlock):
        def __init__(self, config):
            super().__init__(config)
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x, mask):
            self.seen += x.shape[0]
            return super().forward(x, mask)

    class CountsTwice(Counts):
        def forward(self, x, mask):
            self.seen += 2 * x.shape[0]
            return TinyBlock.forward(self, x, mask)

    result = check_module(CountsTwice, Counts, TinyConfig(), INPUTS, train=True)
    assert result.first_failure().kind == "buffer"
    assert "after the forward pass, buffer 'seen'" in str(result)


def test_a_constructor_that_does_not_take_the_config_says_so(lenient):
    class TakesSizes(TinyBlock):
        def __init__(self, d, hidden):
            super().__init__(TinyConfig(d, hidden))

    result = check(TakesSizes)
    assert result.status == grading.FAILED and result.first_failure().kind == "signature"
    assert "TakesSizes(config) cannot be called" in str(result)

    class BreaksInside(TinyBlock):
        def __init__(self, config):
            super().__init__(config)
            self.extra = nn.Linear(config.d)  # a TypeError in the learner's own line

    result = check(BreaksInside)
    assert result.status == grading.ERROR and "nn.Linear(config.d)" in str(result)


def test_a_right_module_written_another_way_passes(lenient):
    class WithSdpa(TinyBlock):
        # The same block through torch's fused attention and its own LayerNorm arithmetic.
        def attend(self, x, mask):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return self.out(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

        def forward(self, x, mask):
            def norm(layer, h):
                centred = h - h.mean(-1, keepdim=True)
                scale = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + layer.eps)
                return centred * scale * layer.weight + layer.bias

            x = x + self.attend(norm(self.norm1, x), mask)
            return x + self.mlp(norm(self.norm2, x))

    result = check(WithSdpa)
    assert result.passed, str(result)


def test_a_part_used_on_nothing_and_a_part_skipped_are_the_same(lenient):
    # A projector-like module: one part per kind of token; a batch may lack a kind. Applied
    # to an empty selection, a part gets an all-zero gradient; skipped, it gets None.
    class PerKind(nn.Module):
        def __init__(self, config: TinyConfig) -> None:
            super().__init__()
            self.a = nn.Linear(config.d, config.d)
            self.b = nn.Linear(config.d, config.d)

        def forward(self, x: torch.Tensor, kind: torch.Tensor, y=None) -> torch.Tensor:
            out = torch.zeros_like(x)
            for value, part in ((0, self.a), (1, self.b)):
                here = kind == value
                if here.any():
                    out[here] = part(x[here])
            return out

    class EveryPartAlways(PerKind):
        def forward(self, x, kind, y=None):
            out = torch.zeros_like(x)
            for value, part in ((0, self.a), (1, self.b)):
                here = kind == value
                out[here] = part(x[here])  # an empty selection gives zero gradients
            if y is not None:  # read where kind is 1: nowhere here, so a zero gradient
                out[kind == 1] = out[kind == 1] + y[kind == 1]
            return out

    only_a = {
        "only kind 0": lambda g: (torch.randn(2, 3, 8, generator=g), torch.zeros(2, 3).long())
    }
    for learner, reference in ((EveryPartAlways, PerKind), (PerKind, EveryPartAlways)):
        result = check_module(learner, reference, TinyConfig(), only_a, name="PerKind")
        assert result.passed, str(result)

    class NeverB(PerKind):  # part b cut off even where kind 1 tokens are present
        def forward(self, x, kind, y=None):
            return torch.where((kind == 0).unsqueeze(-1), self.a(x), self.b(x).detach())

    both = {
        "both kinds": lambda g: (
            torch.randn(2, 3, 8, generator=g),
            torch.tensor([[0, 1, 0], [1, 1, 0]]),
        )
    }
    result = check_module(NeverB, PerKind, TinyConfig(), both, name="PerKind")
    assert not result.passed and "'b.weight', 'b.bias' get no gradient" in str(result)
