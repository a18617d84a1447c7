"""Checking a whole module the learner built: load the reference's weights, compare outputs
and gradients (the CS336 way), then train whichever passed.

:func:`check_module` builds the learner's module and the package's reference from one
config, copies the reference's ``state_dict`` into the learner's module (by name, strictly:
a missing, extra or mis-shaped parameter is reported by name), and runs each input case
through both. It compares the outputs, the buffers after the pass (an EMA codebook
update), and, after a backward pass of one fixed random projection of the output, the
gradient of every parameter and of every floating-point input. Agreeing outputs with a
differing gradient point at the backward pass: a detached tensor, a parameter that is
never used. It reports like every check (:class:`~omni_edu.grading.result.CheckResult`):
never crashes the notebook, "not implemented yet" only for the exercise stub, strict mode
raises in the tests.

:func:`learner_module_or_reference` then picks what a lesson trains: the learner's module
when its check passed, else the reference, with a sentence saying which.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from omni_edu.grading.compare import Difference, compare
from omni_edu.grading.hints import Hints
from omni_edu.grading.learner import STUB_MESSAGE
from omni_edu.grading.result import Case, CaseOutcome, CheckResult, summarize
from omni_edu.grading.run import LearnerMistake, run_check

# The projection that turns the output into one number to differentiate is drawn from this
# seed, so the learner's and the reference's backward passes see the same one.
PROJECTION_SEED = 1234

# Each input case draws its tensors from a generator seeded with this plus its index.
INPUT_SEED = 100

Inputs = Callable[[torch.Generator], Any]


@dataclass
class _Pass:
    """What one module did on one case: outputs, buffers after the pass, gradients."""

    output: Any
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    param_grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    input_grads: dict[int, torch.Tensor | None] = field(default_factory=dict)

    def __repr__(self) -> str:  # what a failure message quotes
        return f"output {summarize(self.output)}"


def _build(factory: Callable[[Any], Any], config: Any, whose: str) -> nn.Module:
    try:
        module = factory(copy.deepcopy(config))
    except TypeError as exc:
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is None:  # the call itself: a constructor's signature
            raise LearnerMistake(
                f"{whose}(config) cannot be called with the one config the check builds both "
                f"modules from ({type(config).__name__}): {exc}. Take the config as the "
                "constructor's one argument, as the spec says.",
                kind="signature",
            ) from exc
        raise
    if not isinstance(module, nn.Module):
        raise LearnerMistake(
            f"{whose}(config) should build a torch.nn.Module; got {type(module).__name__}. "
            "Did you return something else from the factory, or forget to subclass nn.Module?",
            kind="type",
        )
    return module


def _weights_problem(learner: nn.Module, reference: nn.Module) -> str:
    """Why the reference's weights do not load into the learner's module ("" if they do)."""
    want, have = reference.state_dict(), learner.state_dict()
    missing = [k for k in want if k not in have]
    # A buffer of the learner's own (a cached mask, say) is its business; a parameter the
    # reference lacks would go untrained by the reference's weights.
    own = dict(learner.named_parameters())
    extra = [k for k in have if k not in want and k in own]
    shaped = [k for k in want if k in have and want[k].shape != have[k].shape]
    problems = []
    for key in shaped:
        w, h = tuple(want[key].shape), tuple(have[key].shape)
        turned = " (transposed? nn.Linear(in, out) stores its weight as (out, in))"
        problems.append(f"{key!r} should be {w}; yours is {h}" + (turned if h == w[::-1] else ""))
    if missing:
        problems.append(
            "your module has no " + ", ".join(f"{k!r} {tuple(want[k].shape)}" for k in missing)
        )
    if extra:
        problems.append(
            "the reference has no " + ", ".join(f"{k!r} {tuple(have[k].shape)}" for k in extra)
        )
    if not problems:
        return ""
    text = "the reference's weights do not load into your module: " + "; ".join(problems)
    if missing and extra:
        text += (
            ". The check loads weights by name, so name your submodules and parameters as "
            "the spec does"
        )
    return text


def _stub_in(exc: BaseException, module_type: type) -> bool:
    """A bare ``raise NotImplementedError`` in a method of the learner's own class."""
    if not isinstance(exc, NotImplementedError) or exc.args:
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    codes = {getattr(f, "__code__", None) for f in vars(module_type).values() if callable(f)}
    return tb.tb_frame.f_code in codes


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in an output (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _run(
    module: nn.Module,
    inputs: tuple,
    forward: Callable[..., Any],
    train: bool,
    input_grads: bool | Sequence[int],
) -> _Pass:
    """One forward and backward pass of ``module`` on (copies of) ``inputs``."""
    module.train(train)
    wanted = (
        range(len(inputs)) if input_grads is True else () if input_grads is False else input_grads
    )
    args = list(inputs)
    for i in wanted:
        if isinstance(args[i], torch.Tensor) and args[i].is_floating_point():
            args[i] = args[i].detach().clone().requires_grad_(True)
    torch.manual_seed(PROJECTION_SEED)  # a module that draws noise draws the same in both
    output = forward(module, *args)
    # One number from the output: a fixed random projection of every differentiable part,
    # so each output element's gradient counts (a plain sum would miss a permutation).
    g = torch.Generator().manual_seed(PROJECTION_SEED)
    total = None
    for t in _tensors(output):
        if t.is_floating_point() and t.requires_grad:
            weight = torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)
            term = (t * weight).sum()
            total = term if total is None else total + term
    if total is not None:
        total.backward()
    return _Pass(
        output=_detached(output),
        buffers={k: b.detach().clone() for k, b in module.named_buffers()},
        param_grads={
            k: None if p.grad is None else p.grad.detach().clone()
            for k, p in module.named_parameters()
        },
        input_grads={
            i: args[i].grad
            for i in wanted
            if isinstance(args[i], torch.Tensor) and args[i].requires_grad
        },
    )


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, Mapping):
        return {k: _detached(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_detached(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    return value


def _cases(inputs: Inputs | Sequence[Inputs] | Mapping[str, Inputs]) -> list[Case]:
    """The input cases: each callable draws its tensors from its own seeded generator."""
    if callable(inputs):
        named = [("", inputs)]
    elif isinstance(inputs, Mapping):
        named = list(inputs.items())
    else:
        named = [("", make) for make in inputs]
    if not named:
        raise ValueError("check_module needs at least one input case.")
    cases = []
    for i, (label, make) in enumerate(named):
        drawn = make(torch.Generator().manual_seed(INPUT_SEED + i))
        args = drawn if isinstance(drawn, tuple) else (drawn,)
        shapes = ", ".join(
            str(tuple(a.shape)) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args
        )
        text = f"{label}: inputs {shapes}" if label else f"case {i + 1}, inputs {shapes}"
        cases.append(Case(args, label=text, seed=i))
    return cases


def _names(keys: Sequence[str], most: int = 6) -> str:
    """``'a', 'b' and 3 more``: parameter names for a message."""
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _gradient_or_none(grad: torch.Tensor | None) -> torch.Tensor | None:
    """``None`` for no gradient *or* an all-zero one: a part applied to an empty selection
    (a projector's audio map on a batch without audio) gets zeros where a part skipped gets
    ``None`` (and so does the input it reads); either way the output does not depend on it
    in this case."""
    return None if grad is None or not bool(grad.any()) else grad


def _judge(expected: _Pass, got: _Pass, atol: float, rtol: float) -> Difference | None:
    """The first way the learner's pass differs from the reference's, or None."""
    why = compare(expected.output, got.output, atol=atol, rtol=rtol)
    if why is not None:
        return Difference(f"output: {why}", why.kind)
    for name, want in expected.buffers.items():
        why = compare(want, got.buffers.get(name), atol=atol, rtol=rtol)
        if why is not None:
            return Difference(f"after the forward pass, buffer {name!r}: {why}", "buffer")
    grads = [
        (k, _gradient_or_none(want), _gradient_or_none(got.param_grads.get(k)))
        for k, want in expected.param_grads.items()
    ]
    # A parameter cut off from the loss is the clearest sign; name every one of them.
    cut = [k for k, want, have in grads if want is not None and have is None]
    if cut:
        return Difference(
            f"the outputs match, but {_names(cut)} {'gets' if len(cut) == 1 else 'get'} no "
            "gradient (is it used in forward, and not through a detached tensor?)",
            "gradient",
        )
    extra = [k for k, want, have in grads if want is None and have is not None]
    if extra:
        return Difference(
            f"the outputs match, but {_names(extra)} {'gets' if len(extra) == 1 else 'get'} "
            "a gradient where the reference's gets none",
            "gradient",
        )
    differ = [
        (k, why)
        for k, want, have in grads
        if want is not None and (why := compare(want, have, atol=atol, rtol=rtol)) is not None
    ]
    if differ:
        first, why = differ[0]
        also = f" (and {len(differ) - 1} more: {_names([k for k, _ in differ[1:]])})"
        return Difference(
            f"the outputs match, but the gradient of parameter {first!r} differs: {why}"
            + (also if len(differ) > 1 else ""),
            "gradient",
        )
    for i, want in expected.input_grads.items():
        want, have = _gradient_or_none(want), _gradient_or_none(got.input_grads.get(i))
        if (want is None) != (have is None):
            return Difference(
                f"the outputs match, but input {i} {'gets no' if have is None else 'gets a'} "
                f"gradient where the reference's {'gets one' if have is None else 'gets none'}",
                "gradient",
            )
        if want is not None:
            why = compare(want, have, atol=atol, rtol=rtol)
            if why is not None:
                return Difference(
                    f"the outputs match, but the gradient with respect to input {i} differs: {why}",
                    "gradient",
                )
    return None


def _default_hints(name: str) -> Hints:
    return Hints(
        name,
        nudge=f"Build {name} as the spec says: its submodules and parameters with the names "
        "and shapes it gives (the check loads the reference's weights into yours by name), "
        "then its forward pass.",
        failed="Compare your forward pass with the spec step by step; the failing case "
        "names the inputs' shapes.",
        on={
            "weights": "Name and shape every parameter as the spec does: the check copies "
            "the reference's weights into your module by name.",
            "gradient": "Your forward pass gives the right numbers, but its backward pass "
            "differs: look for a .detach(), an in-place change of a tensor autograd needs, or "
            "a parameter that forward never uses.",
            "shape": "Check the output's shape against the spec: a dimension kept or dropped, "
            "heads not merged back, a transpose.",
        },
        recipe="",
        register=False,
    )


def check_module(
    learner: Callable[[Any], Any],
    reference: Callable[[Any], nn.Module],
    config: Any,
    inputs: Inputs | Sequence[Inputs] | Mapping[str, Inputs],
    *,
    forward: Callable[..., Any] | None = None,
    load_reference_weights: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hints: Hints | None = None,
    time_limit: float | None = None,
    name: str | None = None,
    train: bool = False,
    input_grads: bool | Sequence[int] = True,
    show_recipe: bool = False,
) -> CheckResult:
    """Does the learner's module compute what the reference does, forward and backward?

    Args:
        learner: the learner's ``nn.Module`` class, or a factory ``config -> module``.
        reference: the package's class (or factory) of the same idea.
        config: what both are built from (deep-copied for each build).
        inputs: ``callable(generator) -> tuple of input tensors`` (one tensor is fine),
            or a list of such callables for several shapes, or a dict ``label -> callable``.
        forward: ``callable(module, *inputs) -> tensor(s)`` when the pass is not
            ``module(*inputs)`` (keyword arguments, or one output of several).
        load_reference_weights: copy the reference's ``state_dict`` into the learner's
            module (strictly: a missing, extra or mis-shaped parameter, or a missing or
            mis-shaped buffer, fails by name; a buffer of the learner's own is allowed).
            When False both are built after the same seed.
        atol, rtol: the tolerance of every comparison (outputs, buffers, gradients).
        hints: the check's :class:`Hints` (default: generic ones, by kind of failure:
            ``"weights"``, ``"gradient"``, ``"buffer"``, ``"shape"``, ``"values"``).
        time_limit: seconds for the whole check (default: the course's).
        name: the check's name in its box (default: the reference's name).
        train: run both in training mode (``module.train()``); default eval mode, so that
            dropout cannot differ.
        input_grads: which inputs' gradients to compare: True for every floating-point
            input, False for none, or their positions.
        show_recipe: show the full recipe now.

    Returns the :class:`CheckResult`; in strict mode a failure raises ``CheckFailed``.

    Example, the decoder's SwiGLU MLP on two shapes (``tests/test_check_module.py`` checks
    the decoder's ``Block`` the same way, with ``forward=`` for its keyword inputs)::

        check_module(MyMLP, MLP, DecoderConfig(d_model=64),
                     {"a batch": lambda g: torch.randn(2, 6, 64, generator=g),
                      "one token": lambda g: torch.randn(1, 1, 64, generator=g)},
                     hints=HINTS)
    """
    name = name or getattr(reference, "__name__", type(reference).__name__)
    if not callable(reference):
        raise TypeError(f"{name}: reference should be a class or factory; got {reference!r}")
    cases = _cases(inputs)
    call_forward = forward or (lambda module, *args: module(*args))
    learner_type = learner if isinstance(learner, type) else None

    def run_learner(*args: Any) -> _Pass:
        # run_check seeded the generator: the reference built first gets the weights the
        # judge's reference gets, and the learner's own initial weights do not matter.
        try:
            if load_reference_weights:
                ref = _build(reference, config, "the reference")
                mine = _build(learner, config, getattr(learner, "__name__", "your factory"))
                problem = _weights_problem(mine, ref)
                if problem:
                    raise LearnerMistake(problem, kind="weights")
                # Strict for everything the reference has; the learner's extra buffers stay.
                mine.load_state_dict(ref.state_dict(), strict=False)
            else:
                mine = _build(learner, config, getattr(learner, "__name__", "your factory"))
            return _run(mine, args, call_forward, train, input_grads)
        except NotImplementedError as exc:
            # A hand-written stub (a bare raise in the class's own method) is unsolved too.
            if learner_type is not None and _stub_in(exc, learner_type):
                raise NotImplementedError(STUB_MESSAGE) from exc
            raise

    def run_reference(seed: int, args: tuple) -> _Pass:
        torch.manual_seed(seed)  # the same weights the learner's module was given
        return _run(
            _build(reference, config, "the reference"), args, call_forward, train, input_grads
        )

    def judge(case: Case, got: _Pass) -> CaseOutcome:
        expected = run_reference(case.seed, copy.deepcopy(case.args))
        why = _judge(expected, got, atol, rtol)
        if why is None:
            return CaseOutcome(case.describe(), True)
        return CaseOutcome(case.describe(), False, why, kind=why.kind)

    return run_check(
        name,
        run_learner,
        cases,
        judge,
        hints=hints or _default_hints(name),
        show_recipe=show_recipe,
        time_limit=time_limit,
    )


def learner_module_or_reference(
    result: CheckResult,
    learner_factory: Callable[[Any], nn.Module],
    reference_factory: Callable[[Any], nn.Module],
) -> tuple[Callable[[Any], nn.Module], str]:
    """The factory a lesson trains with, and a sentence saying whose it is.

    The learner's module when its check passed, so the lesson trains the learner's own
    code inside OmniLM; else the reference, so an unsolved exercise notebook still runs.
    Print the sentence beside the training run.
    """
    if result.passed:
        return learner_factory, f"Training your own {result.name}: its check passed."
    state = {
        "not implemented": "is not written yet",
        "error": "raises an error",
    }.get(result.status, "does not pass its check yet")
    return reference_factory, (
        f"Training the course's reference {result.name}: your version {state}. "
        "Run this cell again once its check passes to train your own."
    )
