"""Lesson 07's checks pass the reference, report stubs, and reject plausible mistakes."""

import numpy as np
import torch

from omni_edu import grading
from omni_edu.lessons.scaling_laws.checks import (
    check_compute_optimal_split,
    check_huber_log_objective,
    compute_optimal_split,
    huber_log_objective,
)


def stub(*args, **kwargs):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def _predict(theta, log_n, log_d):
    a, b, e, alpha, beta = theta
    return torch.logsumexp(
        torch.stack([a - alpha * log_n, b - beta * log_d, e.expand_as(log_n)]), 0
    )


def huber_mean(theta, log_n, log_d, log_l, delta=1e-3):
    # Plausible mistake: averaged instead of summed over runs.
    r = _predict(theta, log_n, log_d) - log_l
    return torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=delta)


def huber_linear_space(theta, log_n, log_d, log_l, delta=1e-3):
    # Plausible mistake: residual of the losses themselves, not of their logarithms.
    r = _predict(theta, log_n, log_d).exp() - log_l.exp()
    return torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=delta, reduction="sum")


def huber_without_e(theta, log_n, log_d, log_l, delta=1e-3):
    # Plausible mistake: the irreducible loss E left out of the log-sum-exp.
    a, b, _, alpha, beta = theta
    pred = torch.logaddexp(a - alpha * log_n, b - beta * log_d)
    r = pred - log_l
    return torch.nn.functional.huber_loss(r, torch.zeros_like(r), delta=delta, reduction="sum")


def squared(theta, log_n, log_d, log_l, delta=1e-3):
    # Plausible mistake: plain least squares, which ignores delta.
    return 0.5 * ((_predict(theta, log_n, log_d) - log_l) ** 2).sum()


def split_without_six(C, A, B, alpha, beta):
    # Plausible mistake: C instead of C / 6 tokens-times-parameters.
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    return g * C ** (beta / (alpha + beta)), C ** (alpha / (alpha + beta)) / g


def split_swapped_exponents(C, A, B, alpha, beta):
    # Plausible mistake: N* grows with alpha / (alpha + beta) instead of beta / (alpha + beta).
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    c = np.asarray(C) / 6
    return g * c ** (alpha / (alpha + beta)), c ** (beta / (alpha + beta)) / g


def test_references_pass():
    assert check_huber_log_objective(huber_log_objective).passed
    assert check_compute_optimal_split(compute_optimal_split).passed


def test_stubs_are_not_implemented():
    assert check_huber_log_objective(stub).status == grading.NOT_IMPLEMENTED
    assert check_compute_optimal_split(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (huber_mean, huber_linear_space, huber_without_e, squared):
            assert check_huber_log_objective(wrong).status == grading.FAILED, wrong.__name__
        for wrong in (split_without_six, split_swapped_exponents):
            assert check_compute_optimal_split(wrong).status == grading.FAILED, wrong.__name__


def test_a_malformed_answer_fails_without_crashing():
    with grading.lenient():
        result = check_compute_optimal_split(lambda C, **law: 1.0)
        assert result.status == grading.FAILED
        result = check_huber_log_objective(lambda theta, *args: torch.zeros(3))
        assert result.status == grading.FAILED
