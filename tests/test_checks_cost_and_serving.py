import heapq
import math
import operator

import pytest

from omni_edu import cost, grading
from omni_edu.lessons.cost_and_serving import queues
from omni_edu.lessons.cost_and_serving.checks import (
    check_kv_cache_bytes,
    check_qwen2vl_image_tokens,
    check_step,
    kv_cache_bytes,
    qwen2vl_image_tokens,
    step,
)


def stub(*args, **kwargs):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


# Plausible mistakes -------------------------------------------------------------------------


def keys_only(n_layers, n_kv_heads, head_dim, n_tokens, batch=1, bytes_per_value=2):
    return n_layers * n_kv_heads * head_dim * n_tokens * batch * bytes_per_value


def forgot_batch(n_layers, n_kv_heads, head_dim, n_tokens, batch=1, bytes_per_value=2):
    return 2 * n_layers * n_kv_heads * head_dim * n_tokens * bytes_per_value


def floor_sides(height, width, min_pixels=cost.QWEN_MIN_PIXELS, max_pixels=cost.QWEN_MAX_PIXELS):
    # Rounds down instead of to the nearest multiple of 28.
    h, w = height // 28 * 28, width // 28 * 28
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / 28) * 28, math.floor(width / beta / 28) * 28
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / 28) * 28, math.ceil(width * beta / 28) * 28
    return (h // 28) * (w // 28)


def no_limits(height, width, min_pixels=cost.QWEN_MIN_PIXELS, max_pixels=cost.QWEN_MAX_PIXELS):
    return max(1, round(height / 28)) * max(1, round(width / 28))


def patches_not_merged(
    height, width, min_pixels=cost.QWEN_MIN_PIXELS, max_pixels=cost.QWEN_MAX_PIXELS
):
    # Counts 14-px ViT patches, forgetting the 2x2 merge.
    return 4 * cost.qwen2vl_image_tokens(height, width, min_pixels, max_pixels)


def scale_up_divisor(h_divisor, w_divisor):
    """The solution with one side's scale-up rounding divided by another number than 28
    (``math.ceil(height * beta / 29) * 28``): a single-edit mistake that small pictures hide."""

    def wrong(height, width, min_pixels=cost.QWEN_MIN_PIXELS, max_pixels=cost.QWEN_MAX_PIXELS):
        h, w = max(28, round(height / 28) * 28), max(28, round(width / 28) * 28)
        if h * w > max_pixels:
            beta = math.sqrt(height * width / max_pixels)
            h = max(28, math.floor(height / beta / 28) * 28)
            w = max(28, math.floor(width / beta / 28) * 28)
        elif h * w < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h = math.ceil(height * beta / h_divisor) * 28
            w = math.ceil(width * beta / w_divisor) * 28
        return (h // 28) * (w // 28)

    return wrong


def step_with_handoff(handoff):
    """The reference step, but the next stage arrives ``handoff(deployment, stage)`` later."""

    def wrong_step(state):
        at, _, kind, rid, stage = heapq.heappop(state.events)
        state.now = at
        server = state.deployment.placement[stage]
        if kind == queues.ARRIVE:
            state.waiting[server].append((rid, stage))
        else:
            state.busy[server] = False
            if stage + 1 < state.deployment.n_stages:
                delay = handoff(state.deployment, stage)
                state.push(at + delay, queues.ARRIVE, rid, stage + 1)
            else:
                state.finish[rid] = at
        state.start_next(server)

    return wrong_step


# Plausible mistakes: no hand-off time at all, or transfer_time even on one shared server.
step_without_transfer = step_with_handoff(lambda deployment, stage: 0.0)
step_always_transfers = step_with_handoff(lambda deployment, stage: deployment.transfer_time)


def step_that_never_restarts(state):
    at, _, kind, rid, stage = heapq.heappop(state.events)
    state.now = at
    server = state.deployment.placement[stage]
    if kind == queues.ARRIVE:
        state.waiting[server].append((rid, stage))
        state.start_next(server)
    else:  # forgets to start the next waiting job when a server frees up
        state.busy[server] = False
        if stage + 1 < state.deployment.n_stages:
            state.push(at + state.deployment.handoff_time(stage), queues.ARRIVE, rid, stage + 1)
        else:
            state.finish[rid] = at


# The tests ----------------------------------------------------------------------------------


def test_references_pass():
    assert check_kv_cache_bytes(kv_cache_bytes).passed
    assert check_qwen2vl_image_tokens(qwen2vl_image_tokens).passed
    assert check_step(step).passed


def test_the_witness_of_the_scale_up_divisor_mutant():
    # 31x372 scaled up to min_pixels = 40000: 75 tokens; dividing the height by 29, 50.
    assert qwen2vl_image_tokens(31, 372, min_pixels=40_000) == 75
    assert scale_up_divisor(29, 28)(31, 372, min_pixels=40_000) == 50


# (29, 28) passed every case before the elongated scale-up cases were added.
@pytest.mark.parametrize("divisors", [(29, 28), (27, 28), (28, 29), (28, 27)])
def test_a_scale_up_rounded_with_the_wrong_divisor_is_rejected(divisors):
    with grading.lenient():
        result = check_qwen2vl_image_tokens(scale_up_divisor(*divisors))
    assert result.status == grading.FAILED


def test_stubs_are_not_implemented():
    for check in (check_kv_cache_bytes, check_qwen2vl_image_tokens, check_step):
        assert check(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        assert check_kv_cache_bytes(keys_only).status == grading.FAILED
        assert check_kv_cache_bytes(forgot_batch).status == grading.FAILED
        assert check_qwen2vl_image_tokens(floor_sides).status == grading.FAILED
        assert check_qwen2vl_image_tokens(no_limits).status == grading.FAILED
        assert check_qwen2vl_image_tokens(patches_not_merged).status == grading.FAILED
        assert check_step(step_without_transfer).status == grading.FAILED
        # a stalled server leaves requests unfinished: the simulation reports it as an error
        assert check_step(step_that_never_restarts).status in (grading.FAILED, grading.ERROR)


def test_strict_mode_raises_on_a_wrong_answer():
    with pytest.raises(grading.CheckFailed):
        check_kv_cache_bytes(keys_only)


# Item 13: each wrong smart_resize below differs from the reference in one place. -----------


def smart_resize_tokens(
    first=round,
    down=math.floor,
    up=math.ceil,
    area_for_max=lambda h, w: h * w,
    area_for_min=lambda h, w: h * w,
    over=operator.gt,
    under=operator.lt,
    smallest_side=28,
    beta_from_rounded=False,
):
    """A Qwen2-VL token count with the reference's rules; each argument swaps one in."""

    def tokens(height, width, min_pixels=cost.QWEN_MIN_PIXELS, max_pixels=cost.QWEN_MAX_PIXELS):
        h = max(smallest_side, first(height / 28) * 28)
        w = max(smallest_side, first(width / 28) * 28)
        area = h * w if beta_from_rounded else height * width
        if over(area_for_max(h, w), max_pixels):
            beta = math.sqrt(area / max_pixels)
            h = max(smallest_side, down(height / beta / 28) * 28)
            w = max(smallest_side, down(width / beta / 28) * 28)
        elif under(area_for_min(h, w), min_pixels):
            beta = math.sqrt(min_pixels / area)
            h, w = up(height * beta / 28) * 28, up(width * beta / 28) * 28
        return (h // 28) * (w // 28)

    return tokens


QWEN_MISTAKES = {
    "sides truncated (int) instead of rounded": smart_resize_tokens(first=int),
    "sides floored instead of rounded": smart_resize_tokens(first=math.floor),
    "scale-down rounds instead of flooring": smart_resize_tokens(down=round),
    "scale-up rounds instead of taking the ceiling": smart_resize_tokens(up=round),
    "scale-up floors instead of taking the ceiling": smart_resize_tokens(up=math.floor),
    "w*w instead of h*w at max_pixels": smart_resize_tokens(area_for_max=lambda h, w: w * w),
    "h*h instead of h*w at max_pixels": smart_resize_tokens(area_for_max=lambda h, w: h * h),
    "w*w instead of h*w at min_pixels": smart_resize_tokens(area_for_min=lambda h, w: w * w),
    "h*h instead of h*w at min_pixels": smart_resize_tokens(area_for_min=lambda h, w: h * h),
    "no scale-up path": smart_resize_tokens(under=lambda area, limit: False),
    "scale factor from the rounded sides": smart_resize_tokens(beta_from_rounded=True),
    "no 28-pixel minimum (banners)": smart_resize_tokens(smallest_side=0),
    ">= instead of > at max_pixels": smart_resize_tokens(over=operator.ge),
    "<= instead of < at min_pixels": smart_resize_tokens(under=operator.le),
}


def test_the_mistake_builder_matches_the_reference_when_nothing_is_swapped():
    right = smart_resize_tokens()
    sizes = [(h, w) for h in range(5, 3000, 97) for w in range(5, 3000, 89)]
    assert all(
        right(h, w) == qwen2vl_image_tokens(h, w) for h, w in sizes if max(h, w) <= 200 * min(h, w)
    )


@pytest.mark.parametrize("mistake", sorted(QWEN_MISTAKES))
def test_qwen_check_rejects_each_wrong_rule(mistake):
    with grading.lenient():
        assert check_qwen2vl_image_tokens(QWEN_MISTAKES[mistake]).status == grading.FAILED


def test_the_step_builder_with_the_right_hand_off_passes():
    right = step_with_handoff(lambda deployment, stage: deployment.handoff_time(stage))
    assert check_step(right).passed


def test_step_check_rejects_a_transfer_on_a_shared_server():
    with grading.lenient():
        assert check_step(step_always_transfers).status == grading.FAILED


def test_the_boundary_case_gets_the_off_by_one_hint():
    grading.reset_attempts()
    with grading.lenient():
        result = check_qwen2vl_image_tokens(QWEN_MISTAKES[">= instead of > at max_pixels"])
    assert "exactly max_pixels" in result.first_failure().label
    assert "Off by one" in result.hint and "recipe" not in str(result).split("more help")[0]
    grading.reset_attempts()


def test_numpy_and_tensor_numbers_are_accepted():
    import numpy as np
    import torch

    assert check_kv_cache_bytes(lambda *args: np.int64(kv_cache_bytes(*args))).passed
    assert check_qwen2vl_image_tokens(
        lambda *a, **k: torch.tensor(qwen2vl_image_tokens(*a, **k))
    ).passed
