import heapq
import math

from omni_edu import cost, grading, serving
from omni_edu.checks.cost_and_serving import (
    check_kv_cache_bytes,
    check_qwen2vl_image_tokens,
    check_step,
    kv_cache_bytes,
    qwen2vl_image_tokens,
    step,
)


def stub(*args, **kwargs):
    raise NotImplementedError


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


def step_without_transfer(state):
    at, _, kind, rid, stage = heapq.heappop(state.events)
    state.now = at
    server = state.deployment.placement[stage]
    if kind == serving.ARRIVE:
        state.waiting[server].append((rid, stage))
    else:
        state.busy[server] = False
        if stage + 1 < state.deployment.n_stages:
            state.push(at, serving.ARRIVE, rid, stage + 1)  # forgets the hand-off time
        else:
            state.finish[rid] = at
    state.start_next(server)


def step_that_never_restarts(state):
    at, _, kind, rid, stage = heapq.heappop(state.events)
    state.now = at
    server = state.deployment.placement[stage]
    if kind == serving.ARRIVE:
        state.waiting[server].append((rid, stage))
        state.start_next(server)
    else:  # forgets to start the next waiting job when a server frees up
        state.busy[server] = False
        if stage + 1 < state.deployment.n_stages:
            state.push(at + state.deployment.handoff_time(stage), serving.ARRIVE, rid, stage + 1)
        else:
            state.finish[rid] = at


# The tests ----------------------------------------------------------------------------------


def test_references_pass():
    assert check_kv_cache_bytes(kv_cache_bytes).passed
    assert check_qwen2vl_image_tokens(qwen2vl_image_tokens).passed
    assert check_step(step).passed


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
    import pytest

    with pytest.raises(grading.CheckFailed):
        check_kv_cache_bytes(keys_only)
