"""The lesson 04 checks pass the reference, flag a stub and reject plausible mistakes."""

import torch
import torch.nn.functional as F

from omni_edu import grading
from omni_edu.lessons.diffusion_head.checks import check_euler_step, check_flow_matching_loss
from omni_edu.model.heads.flow import euler_step, flow_matching_loss


def stub(*args):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def reversed_path(velocity_fn, x, cond, noise, t):
    # Mistake: t = 0 at the data and t = 1 at the noise (the sampler runs the other way).
    t_col = t[:, None]
    x_t = (1 - t_col) * x + t_col * noise
    return F.mse_loss(velocity_fn(x_t, t, cond), x - noise)


def target_is_the_data(velocity_fn, x, cond, noise, t):
    # Mistake: regress on x instead of the velocity x - noise.
    t_col = t[:, None]
    x_t = (1 - t_col) * noise + t_col * x
    return F.mse_loss(velocity_fn(x_t, t, cond), x)


def step_backwards(velocity_fn, x_t, t, dt, cond):
    # Mistake: subtract the velocity (that walks back towards the noise).
    return x_t - dt * velocity_fn(x_t, torch.full((x_t.shape[0],), float(t)), cond)


def velocity_at_the_end(velocity_fn, x_t, t, dt, cond):
    # Mistake: evaluate the field at t + dt instead of t.
    return x_t + dt * velocity_fn(x_t, torch.full((x_t.shape[0],), float(t + dt)), cond)


def one_time_for_all(velocity_fn, x_t, t, dt, cond):
    # Mistake: t as a (1,) tensor, which broadcasts in a simple field but is not (n,).
    return x_t + dt * velocity_fn(x_t, torch.tensor([float(t)]), cond)


def test_references_pass():
    assert check_flow_matching_loss(flow_matching_loss).passed
    assert check_euler_step(euler_step).passed


def test_stubs_are_not_implemented():
    assert check_flow_matching_loss(stub).status == grading.NOT_IMPLEMENTED
    assert check_euler_step(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        assert check_flow_matching_loss(reversed_path).status == grading.FAILED
        assert check_flow_matching_loss(target_is_the_data).status == grading.FAILED
        assert check_euler_step(step_backwards).status == grading.FAILED
        assert check_euler_step(velocity_at_the_end).status == grading.FAILED


def test_a_time_tensor_of_shape_one_is_rejected_with_the_shape_hint():
    with grading.lenient():
        result = check_euler_step(one_time_for_all)
    assert result.status == grading.FAILED
    failure = result.first_failure()
    assert "embeds t per token" in failure.label and "shape (1,)" in failure.message
    assert "torch.full((x_t.shape[0],), t)" in result.hint
