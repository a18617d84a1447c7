"""Checks for lesson 03's exercises: the quantisation step, the EMA codebook update, and the
whole VQ layer as one module (a core build, checked with
:func:`~omni_edu.grading.check_module` against the package's
:class:`~omni_edu.model.heads.quantizers.VectorQuantizer`).

Every check takes ``show_recipe=True`` (show the full recipe now) and ``time_limit``
(seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from omni_edu.grading import (
    Case,
    CheckResult,
    Difference,
    Hints,
    LearnerMistake,
    check_function,
    check_module,
    check_property,
    compare,
    summarize,
)
from omni_edu.model.heads.quantizers import (
    VectorQuantizer,
    ema_codebook_update,
    quantize_straight_through,
)

QUANTIZE = Hints(
    "quantize",
    nudge="Two parts: find each vector's nearest code (the smallest squared distance), then "
    "return that code's value while letting the gradient reach z as if nothing had "
    "happened (the straight-through trick).",
    failed="Nearest code by squared distance; z_q has the code's value; the gradient passes "
    "straight through to z.",
    on={
        "indices": "The nearest code has the smallest squared distance: compute every "
        "(vector, code) distance at once (torch.cdist, or broadcasting) and take argmin over "
        "the codes (dim=1).",
        "value": "z_q is the chosen code itself: codebook[indices].",
        "gradient": "Straight-through: z + (z_q - z).detach() has the value of z_q and the "
        "gradient of z (the detached part counts as a constant).",
        "return": "Return two things: (z_q, indices).",
    },
    recipe="indices = squared distances .argmin(dim=1); z_q = codebook[indices]; "
    "return z + (z_q - z).detach(): the value of z_q, the gradient of z.",
)

EMA_UPDATE = Hints(
    "ema_codebook_update",
    nudge="Count how many vectors chose each code and sum them per code; blend both into "
    "the running statistics with the decay; smooth the counts (Laplace) before dividing "
    "the sums by the counts to get the codebook.",
    failed="Both running statistics blend as decay * old + (1 - decay) * this batch; the "
    "codebook divides the sums by the SMOOTHED counts.",
    on={
        "length": "Return three things: (cluster_size, embed_sum, codebook).",
    },
    recipe="counts = one_hot(indices, K).sum(0); sums = one_hot.T @ z; new = decay * old + "
    "(1 - decay) * batch for both; Laplace: (size + eps) / (total + K * eps) * total; "
    "codebook = embed_sum / smoothed[:, None].",
)


def _quantize_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    tiny_codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    tiny_z = torch.tensor([[0.9, 1.2], [0.1, -0.1], [-1.5, 0.0], [3.0, 3.0]])
    return [
        Case((tiny_z, tiny_codebook), label="4 vectors, 3 codes in 2-D"),
        Case(
            (torch.randn(32, 8, generator=g), torch.randn(16, 8, generator=g)),
            label="32 vectors, 16 codes in 8-D",
        ),
        Case(
            (3 * torch.randn(50, 3, generator=g), torch.randn(5, 3, generator=g)),
            label="far-away vectors, 5 codes in 3-D",
        ),
    ]


def check_quantize(
    learner_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """``learner_fn(z, codebook) -> (z_q, indices)``: nearest codes, straight-through gradient."""

    def prop(case: Case, got) -> str | None:
        z, codebook = case.args
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return Difference(f"return a tuple (z_q, indices); got {type(got).__name__}", "return")
        z_q, indices = got
        expected_q, expected_idx = quantize_straight_through(z, codebook)
        why = compare(expected_idx, indices)
        if why:
            return Difference(
                f"indices: {why} (the nearest code has the *smallest* squared distance)",
                "indices",
            )
        why = compare(expected_q.detach(), z_q.detach())
        if why:
            return Difference(f"z_q: {why} (z_q should equal codebook[indices] in value)", "value")
        # Backward: run again on a z that records gradients.
        z_grad = z.clone().requires_grad_(True)
        z_q2, _ = learner_fn(z_grad, codebook.clone())
        if not z_q2.requires_grad:
            return Difference(
                "no gradient reaches z: z_q is cut off from the encoder. The decoder's "
                "gradient must pass straight through to z.",
                "gradient",
            )
        upstream = torch.linspace(-1, 1, z.numel()).reshape(z.shape)
        (grad,) = torch.autograd.grad((z_q2 * upstream).sum(), z_grad, allow_unused=True)
        if grad is None:
            return Difference(
                "no gradient reaches z: z_q does not depend on z in the backward pass.",
                "gradient",
            )
        why = compare(upstream, grad)
        if why:
            return Difference(
                f"d z_q / d z should be the identity (straight-through); {why}", "gradient"
            )
        return None

    return check_property(
        "quantize",
        learner_fn,
        _quantize_cases(),
        prop,
        hints=QUANTIZE,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def _ema_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    k, d, n = 6, 4, 40
    return [
        Case(
            (
                torch.tensor([1.0, 1.0]),
                torch.tensor([[0.0], [5.0]]),
                torch.tensor([[1.0], [2.0], [10.0]]),
                torch.tensor([0, 0, 1]),
                0.5,
                0.1,
            ),
            label="the hand-computed case: 2 codes in 1-D, decay 0.5, eps 0.1",
        ),
        Case(
            (
                torch.rand(k, generator=g) * 5,
                torch.randn(k, d, generator=g),
                torch.randn(n, d, generator=g),
                torch.randint(0, k - 2, (n,), generator=g),  # the last two codes get nothing
                0.9,
                1e-5,
            ),
            label="6 codes in 4-D, two of them unused this batch",
            hint="A code that no vector chose this batch still decays: its new statistics are "
            "decay * old + (1 - decay) * 0.",
        ),
        Case(
            (
                torch.full((3,), 0.01),
                torch.randn(3, 2, generator=g),
                torch.randn(10, 2, generator=g),
                torch.zeros(10, dtype=torch.long),
                0.99,
                0.5,
            ),
            label="nearly empty codes, strong smoothing (eps 0.5)",
            hint="Laplace smoothing of the NEW cluster sizes: (size + eps) / (total + K * eps) "
            "* total, with total their sum and K the number of codes; use the eps argument.",
        ),
    ]


def check_ema_update(
    learner_fn: Callable, *, show_recipe: bool = False, time_limit: float | None = None
) -> CheckResult:
    """``learner_fn(cluster_size, embed_sum, z, indices, decay, eps)``
    ``-> (cluster_size, embed_sum, codebook)``."""
    return check_function(
        "ema_codebook_update",
        learner_fn,
        ema_codebook_update,
        _ema_cases(),
        atol=1e-5,
        rtol=1e-4,
        hints=EMA_UPDATE,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


# ----------------------------------------------------------------------------- core build

VECTOR_QUANTIZER = Hints(
    "VectorQuantizer",
    nudge="One module, four jobs: find each vector's nearest code, return the code's value "
    "with z's gradient (straight-through), the commitment loss times beta, and - in "
    "training mode only - the EMA update of the running counts, sums and codebook.",
    failed="Check each job against the spec: nearest code by squared distance; z_q = the "
    "code's value with the gradient of z; loss = beta * mean((z - code.detach())^2) and "
    "nothing else (EMA moves the codes); the EMA statistics from this batch's encoder "
    "outputs z (not the codes), decay * old + (1 - decay) * new, the codebook from the "
    "sums over the Laplace-smoothed counts; z_q computed before the update.",
    on={
        "weights": "Name the state as the spec does: a parameter codebook (K, code_dim) that "
        "gradients do not train, and two buffers, cluster_size (K,) and embed_sum "
        "(K, code_dim) (register_buffer).",
        "buffer": "The running statistics after one training step differ: decay * old + "
        "(1 - decay) * this batch, counts from a one-hot of the indices, sums of z per code.",
        "gradient": "The outputs match but a gradient does not: z_q must carry z's gradient "
        "(z + (code - z).detach()), and the loss's gradient reaches z only through the "
        "commitment term.",
        "shape": "indices has the shape of z without its last axis; z_q the shape of z.",
    },
    recipe="__init__: self.codebook = nn.Parameter(torch.randn(K, d), requires_grad=False); "
    "register_buffer('cluster_size', torch.ones(K)); register_buffer('embed_sum', "
    "self.codebook.detach().clone()). forward(z): flat = z.reshape(-1, d); indices = "
    "squared distances to the codebook .argmin(1); code = self.codebook[indices]; z_q = "
    "flat + (code - flat).detach(); loss = beta * F.mse_loss(flat, code.detach()); if "
    "self.training: with torch.no_grad(): one_hot = F.one_hot(indices, K).float(); "
    "cluster_size = decay * cluster_size + (1 - decay) * one_hot.sum(0); embed_sum = decay "
    "* embed_sum + (1 - decay) * one_hot.T @ flat; n = cluster_size.sum(); smoothed = "
    "(cluster_size + eps) / (n + K * eps) * n; codebook.copy_(embed_sum / smoothed[:, "
    "None]). Return z_q.reshape(z.shape), indices.reshape(z.shape[:-1]), loss.",
)


@dataclass
class VQLayerConfig:
    """The VQ layer of the exercise: ``codebook_size`` codes of ``code_dim`` numbers, the
    commitment weight ``beta``, the EMA's ``decay`` and Laplace ``eps``."""

    codebook_size: int = 8
    code_dim: int = 4
    beta: float = 0.25
    decay: float = 0.9
    eps: float = 0.5


class VQLayerReference(VectorQuantizer):
    """The package's :class:`~omni_edu.model.heads.quantizers.VectorQuantizer` with EMA updates, as
    the exercise's module: ``forward(z) -> (z_q, indices, loss)``; its state is the
    ``codebook`` parameter and the ``cluster_size`` and ``embed_sum`` buffers (no k-means,
    no dead-code restart)."""

    def __init__(self, config: VQLayerConfig) -> None:
        super().__init__(
            config.codebook_size,
            config.code_dim,
            beta=config.beta,
            ema=True,
            decay=config.decay,
            eps=config.eps,
        )
        # Keep only the EMA's state: the restart counter and the k-means flag go (the flag
        # stays as a plain attribute, always set: no k-means here).
        del self.steps_unused
        del self.initialised
        self.initialised = torch.tensor(True)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = super().forward(z)
        return out.z_q, out.indices, out.loss


def reference_vq_layer(config: VQLayerConfig) -> VQLayerReference:
    """The reference with its codes drawn where the inputs are (a unit normal), so that the
    nearest code, the EMA and the smoothing all matter."""
    layer = VQLayerReference(config)
    with torch.no_grad():
        layer.codebook.normal_()
        layer.embed_sum.copy_(layer.codebook)
        layer.cluster_size.uniform_(0.5, 2.0)
    return layer


def _vq_forward(layer: torch.nn.Module, z: torch.Tensor) -> dict:
    """The layer's three outputs, and its codebook after the pass (the EMA's update)."""
    out = layer(z)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise LearnerMistake(
            f"forward should return (z_q, indices, loss); it returned {summarize(out)}",
            kind="return",
        )
    z_q, indices, loss = out
    return {
        "z_q": z_q,
        "indices": indices,
        "loss": loss,
        "codebook after the step": layer.codebook.detach().clone(),
    }


VQ_CASES = {
    "12 vectors": lambda g: torch.randn(12, 4, generator=g),
    "a grid (2, 3, 3, 4): one vector per patch": lambda g: torch.randn(2, 3, 3, 4, generator=g),
    "5 vectors for 8 codes (some codes unused)": lambda g: torch.randn(5, 4, generator=g),
}


def check_vector_quantizer(
    learner: Callable[[VQLayerConfig], torch.nn.Module],
    *,
    show_recipe: bool = False,
    time_limit: float | None = None,
) -> CheckResult:
    """Does ``learner(config)`` build the VQ layer: nearest code, straight-through gradient,
    commitment loss and the EMA update, as one module?

    The reference's state (codebook, cluster_size, embed_sum) is loaded into the learner's
    module by name; in training mode, the outputs ``(z_q, indices, loss)``, the codebook and
    the running statistics after the step, and the gradient with respect to ``z`` are
    compared, for flat vectors, a grid, and more codes than vectors.
    """
    return check_module(
        learner,
        reference_vq_layer,
        VQLayerConfig(),
        VQ_CASES,
        forward=_vq_forward,
        train=True,
        name="VectorQuantizer",
        hints=VECTOR_QUANTIZER,
        show_recipe=show_recipe,
        time_limit=time_limit,
    )
