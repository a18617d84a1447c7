"""Every lesson's exercise checks as one table of (check, reference, plausible mistakes).

Each row's check passes its reference and every other right answer beside it, reports "not
implemented" on the exercise stub, and rejects each plausible mistake: wrong axes,
off-by-one boundaries, padding at the start as well as the end, both branches of a limit.
The mistakes are written out below, lesson by lesson, each saying what it gets wrong. After
the table come the checks' behaviours a row cannot state (graduated hints, the learner's
line in an error). Each row carries its lesson's marker (``-m lesson02``).
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omni_edu import cost, grading
from omni_edu.lessons.any_to_any.checks import check_make_document, check_omni_loss
from omni_edu.lessons.cost_and_serving import queues
from omni_edu.lessons.cost_and_serving.checks import (
    TrainStep,
    check_kv_cache_bytes,
    check_qwen2vl_image_tokens,
    check_step,
    check_train_step,
    kv_cache_bytes,
    qwen2vl_image_tokens,
    step,
)
from omni_edu.lessons.diffusion_family.checks import (
    check_masked_after,
    check_span_flow_loss,
    check_unmask_by_confidence,
)
from omni_edu.lessons.diffusion_head.checks import (
    check_adaln_block,
    check_conditioned_mlp,
    check_euler_step,
    check_flow_head,
    check_flow_matching_loss,
)
from omni_edu.lessons.evaluation.benchmark import blind_accuracy, choose, circular_correct, rotate
from omni_edu.lessons.evaluation.checks import check_blind_accuracy, check_circular_correct
from omni_edu.lessons.fusion_strategies.checks import (
    GatedCrossAttention,
    check_gated_cross_attention,
    check_media_visibility_mask,
    media_visibility_mask,
)
from omni_edu.lessons.interleaved_autoregression.checks import (
    apply_rope,
    attention_mask,
    check_apply_rope,
    check_attention_mask,
    check_cached_step,
    check_decoder_block,
    check_kv_cache_step,
    decode_with_cache,
)
from omni_edu.lessons.omni_tokens.checks import (
    ProjectorReference,
    check_place_segments,
    check_projector,
    place_segments,
)
from omni_edu.lessons.scaling_laws.checks import (
    check_compute_optimal_split,
    check_huber_log_objective,
    compute_optimal_split,
    huber_log_objective,
)
from omni_edu.lessons.vq_tokens.checks import (
    VQLayerReference,
    check_ema_update,
    check_quantize,
    check_vector_quantizer,
)
from omni_edu.lessons.welcome.checks import check_to_unit_range, to_unit_range
from omni_edu.modalities import Modality
from omni_edu.model.heads.flow import (
    AdaLNBlock,
    ConditionedMLP,
    FlowHead,
    euler_step,
    flow_matching_loss,
)
from omni_edu.model.heads.masked import masked_after, unmask_by_confidence
from omni_edu.model.heads.quantizers import ema_codebook_update, quantize_straight_through
from omni_edu.model.heads.span import span_flow_loss
from omni_edu.model.interleave import SpecialTokens, audio_segment, image_segment, text_segment
from omni_edu.model.omni_lm import OmniLM
from omni_edu.model.transformer import Block
from omni_edu.parts.any_to_any import get_direction, make_document
from tests.lessons import test_any_to_any_checks as a2a_mistakes
from tests.lessons import test_cost_and_serving_checks as step_mistakes
from tests.lessons import test_diffusion_head_checks as head_mistakes
from tests.lessons import test_fusion_strategies_checks as fusion_mistakes
from tests.lessons import test_interleaved_autoregression_checks as block_mistakes
from tests.lessons import test_omni_tokens_checks as projector_mistakes
from tests.lessons import test_vq_tokens_checks as vq_mistakes


def stub(*args, **kwargs):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


# === lesson 00, welcome: plausible mistakes ====================


def whole_batch(images):
    # Plausible mistake: one min/max for the whole batch instead of per image.
    return (images - images.min()) / (images.max() - images.min())


def no_eps(images):
    # Plausible mistake: a constant image divides by zero.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low)


def range_clamped_at_eps(images, eps=1e-8):
    # Plausible mistake: max(range, eps) instead of range + eps; equal unless range ~ eps.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(eps)


def eps_only_when_constant(images, eps=1e-8):
    # Plausible mistake: eps replaces a zero range instead of being added to every range.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    span = images.amax(dim=(1, 2, 3), keepdim=True) - low
    return (images - low) / torch.where(span == 0, torch.full_like(span, eps), span)


def eps_ignored(images, eps=1e-8):
    # Plausible mistake: a hard-coded 1e-8 whatever eps the caller passes.
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (images.amax(dim=(1, 2, 3), keepdim=True) - low + 1e-8)


def flattened(images, eps=1e-8):
    # Plausible mistake: flattens each image to find its range and returns it flat.
    flat = images.flatten(1)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    return (flat - low) / (high - low + eps)


# === lesson 01, omni_tokens: plausible mistakes ====================


# The projector's wrong modules are in tests/lessons/test_omni_tokens_checks.py.


def _walk(document, specials, group_by_modality=False, skip_markers=False):
    specials = specials or SpecialTokens()
    if group_by_modality:
        document = sorted(document, key=lambda s: int(s.modality))
    modality, ids = [], []

    def marker(token):
        if token is not None and not skip_markers:
            modality.append(int(Modality.TEXT))
            ids.append(token)

    marker(specials.bos)
    for seg in document:
        opening, closing = specials.around(seg.modality)
        marker(opening)
        modality += [int(seg.modality)] * len(seg)
        ids += seg.data.tolist() if seg.modality == Modality.TEXT else [0] * len(seg)
        marker(closing)
    marker(specials.eos)
    return torch.tensor(modality), torch.tensor(ids)


# === lesson 02, interleaved_autoregression: plausible mistakes ====================


def mask_all_minus_one_is_a_span(real, span_ids=None):
    # Plausible mistake: every token with span id -1 counts as one big bidirectional span.
    seq = real.shape[1]
    idx = torch.arange(seq)
    mask = (idx[None, :] <= idx[:, None]) & real[:, None, :] & real[:, :, None]
    if span_ids is not None:
        mask = mask | (span_ids[:, :, None] == span_ids[:, None, :])
    return mask | (torch.eye(seq, dtype=torch.bool) & ~real[:, :, None])


def mask_sees_the_future(real, span_ids=None):
    # Plausible mistake: the triangle the wrong way round (key >= query).
    seq = real.shape[1]
    idx = torch.arange(seq)
    mask = (idx[None, :] >= idx[:, None]) & real[:, None, :] & real[:, :, None]
    if span_ids is not None:
        same = (span_ids[:, :, None] == span_ids[:, None, :]) & (span_ids[:, :, None] >= 0)
        mask = mask | same
    return mask | (torch.eye(seq, dtype=torch.bool) & ~real[:, :, None])


def mask_assumes_padding_at_the_end(real, span_ids=None):
    # Plausible mistake: the real tokens of a row are taken to be its first real.sum().
    first_n = torch.arange(real.shape[1])[None, :] < real.sum(dim=1, keepdim=True)
    return attention_mask(first_n, span_ids)


def rope_turns_backwards(x, cos, sin):
    # Plausible mistake: the signs of sin swapped, i.e. a rotation by -angle.
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos + b * sin, -a * sin + b * cos], dim=-1).flatten(-2)


def rope_halves_concatenated(x, cos, sin):
    # Plausible mistake: right rotation, but the halves are concatenated, not interleaved.
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def kv_step(q, k, v, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    weights = (q @ k_cache.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return weights @ v_cache, k_cache, v_cache


def kv_step_causal_flag(q, k, v, k_cache, v_cache):
    # Plausible mistake: is_causal=True with a single query keeps only the first key.
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, is_causal=True)
    return out, k_cache, v_cache


def kv_step_no_scale(q, k, v, k_cache, v_cache):
    # Plausible mistake: forgetting the 1/sqrt(head_dim) temperature.
    k_cache, v_cache = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    return (q @ k_cache.transpose(-2, -1)).softmax(dim=-1) @ v_cache, k_cache, v_cache


def kv_step_forgets_to_store(q, k, v, k_cache, v_cache):
    # Plausible mistake: attends correctly but hands back the old caches.
    out, _, _ = kv_step(q, k, v, k_cache, v_cache)
    return out, k_cache, v_cache


def kv_step_returns_only_out(q, k, v, k_cache, v_cache):
    # Plausible mistake: returns the attention output but not the grown caches.
    out, _, _ = kv_step(q, k, v, k_cache, v_cache)
    return out


def kv_step_appends_on_the_wrong_axis(q, k, v, k_cache, v_cache):
    k_cache = torch.cat([k_cache, k], dim=3)  # the learner's own line raises here
    return kv_step(q, k, v, k_cache, v_cache)


# === lesson 03, vq_tokens: plausible mistakes ====================


def no_straight_through(z, codebook):
    # Mistake: return the codes themselves; the encoder never gets a gradient.
    indices = torch.cdist(z, codebook).argmin(dim=1)
    return codebook[indices], indices


def forgot_detach(z, codebook):
    # Mistake: z + (z_q - z) without .detach() is z_q again, gradient included.
    indices = torch.cdist(z, codebook).argmin(dim=1)
    return z + (codebook[indices] - z), indices


def farthest_code(z, codebook):
    # Mistake: argmax instead of argmin.
    indices = torch.cdist(z, codebook).argmax(dim=1)
    z_q = codebook[indices]
    return z + (z_q - z).detach(), indices


def no_smoothing(cluster_size, embed_sum, z, indices, decay, eps):
    # Mistake: divide by the raw running count (no Laplace smoothing).
    one_hot = torch.nn.functional.one_hot(indices, cluster_size.shape[0]).float()
    cluster_size = decay * cluster_size + (1 - decay) * one_hot.sum(0)
    embed_sum = decay * embed_sum + (1 - decay) * one_hot.T @ z
    return cluster_size, embed_sum, embed_sum / cluster_size[:, None]


def decay_swapped(cluster_size, embed_sum, z, indices, decay, eps):
    # Mistake: the new batch gets weight decay, the history 1 - decay.
    return ema_codebook_update(cluster_size, embed_sum, z, indices, 1 - decay, eps)


# === lesson 04, diffusion_head: plausible mistakes ====================


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


# === lesson 04b, diffusion_family: plausible mistakes ====================


def rounded_up(step, steps, length):
    # Mistake: ceil instead of floor; cos(pi/2) is 6e-17 in floating point, so one code
    # stays hidden after the last step.
    n = math.ceil(length * math.cos(math.pi / 2 * step / steps))
    return max(0, min(n, length - step))


def no_reveal_cap(step, steps, length):
    # Mistake: the schedule alone, without "at least one code per step".
    return math.floor(length * math.cos(math.pi / 2 * step / steps))


def linear_schedule(step, steps, length):
    # Mistake: a linear schedule instead of the cosine one.
    return max(0, min(math.floor(length * (1 - step / steps)), length - step))


def sine_schedule(step, steps, length):
    # Mistake: sin instead of cos (it hides more as decoding goes on).
    return max(0, min(math.floor(length * math.sin(math.pi / 2 * step / steps)), length - step))


def one_step_late(step, steps, length):
    # Mistake: the count after step + 1.
    return masked_after(min(step + 1, steps), steps, length)


def remasks_revealed(codes, masked, sampled, confidence, n_masked):
    # Mistake: ranks every position, so a revealed code of low confidence is hidden again.
    rank = confidence.argsort(dim=1).argsort(dim=1)
    still = rank < n_masked
    return torch.where(masked & ~still, sampled, codes), still


def keeps_the_surest_hidden(codes, masked, sampled, confidence, n_masked):
    # Mistake: the most confident draws stay hidden, the least confident are revealed.
    return unmask_by_confidence(codes, masked, sampled, -confidence, n_masked)


def overwrites_revealed(codes, masked, sampled, confidence, n_masked):
    # Mistake: every position not kept hidden takes its draw, revealed ones too.
    _, still = unmask_by_confidence(codes, masked, sampled, confidence, n_masked)
    return torch.where(still, codes, sampled), still


def ranks_the_whole_batch(codes, masked, sampled, confidence, n_masked):
    # Mistake: one ranking over all spans at once, so n_masked is shared by the batch.
    score = confidence.masked_fill(~masked, float("inf")).flatten()
    still = (masked.flatten() & (score.argsort().argsort() < n_masked)).view_as(masked)
    return torch.where(masked & ~still, sampled, codes), still


def keeps_one_too_many(codes, masked, sampled, confidence, n_masked):
    # Mistake: off by one in the count kept hidden.
    return unmask_by_confidence(codes, masked, sampled, confidence, n_masked + 1)


def time_per_token(denoiser, x, noise, t):
    # Mistake: t as a column, as for single tokens: (n, 1) broadcasts over the wrong axes.
    x_t = (1 - t[:, None]) * noise + t[:, None] * x
    return F.mse_loss(denoiser(x_t, t), x - noise)


def span_path_reversed(denoiser, x, noise, t):
    # Mistake: t = 0 at the data, t = 1 at the noise.
    t_span = t[:, None, None]
    return F.mse_loss(denoiser((1 - t_span) * x + t_span * noise, t), x - noise)


def span_target_is_noise_minus_data(denoiser, x, noise, t):
    # Mistake: the velocity points from the data to the noise.
    t_span = t[:, None, None]
    return F.mse_loss(denoiser((1 - t_span) * noise + t_span * x, t), noise - x)


def one_token_at_a_time(denoiser, x, noise, t):
    # Mistake: each token denoised alone (MAR's way), not the span as a whole.
    t_span = t[:, None, None]
    x_t = (1 - t_span) * noise + t_span * x
    v = torch.cat([denoiser(x_t[:, i : i + 1], t) for i in range(x.shape[1])], dim=1)
    return F.mse_loss(v, x - noise)


def summed_not_averaged(denoiser, x, noise, t):
    # Mistake: the sum of squared errors instead of their mean.
    t_span = t[:, None, None]
    return (denoiser((1 - t_span) * noise + t_span * x, t) - (x - noise)).pow(2).sum()


def times_per_token_to_the_denoiser(denoiser, x, noise, t):
    # Mistake: one time per token handed to the denoiser, which wants one per span.
    t_span = t[:, None, None]
    x_t = (1 - t_span) * noise + t_span * x
    return F.mse_loss(denoiser(x_t, t.repeat_interleave(x.shape[1])), x - noise)


# === lesson 05, fusion_strategies: plausible mistakes ====================


def mask_every_earlier_item(text_positions, media_positions, media_items):
    # Plausible mistake (the rule before Flamingo's): every media token before the text.
    return media_visibility_mask(text_positions, media_positions, rule="all")


def mask_including_padding(text_positions, media_positions, media_items):
    # Plausible mistake: forgets that position -1 marks padding (-1 is "before" everything).
    before = media_positions[:, None, :] < text_positions[:, :, None]
    latest = torch.where(before, media_positions[:, None, :], -2).argmax(-1)
    return before & (media_items[:, None, :] == media_items.gather(1, latest)[:, :, None])


def mask_transposed(text_positions, media_positions, media_items):
    # Plausible mistake: (batch, n_media, n_text) instead of queries x keys.
    return media_visibility_mask(text_positions, media_positions, media_items).transpose(1, 2)


def mask_future(text_positions, media_positions, media_items):
    # Plausible mistake: the comparison the wrong way round (media *after* the text).
    valid = (media_positions >= 0)[:, None, :]
    return (media_positions[:, None, :] > text_positions[:, :, None]) & valid


def mask_latest_token_only(text_positions, media_positions, media_items):
    # Plausible mistake: the most recent media *token* instead of the whole item.
    before = media_visibility_mask(text_positions, media_positions, rule="all")
    latest = torch.where(before, media_positions[:, None, :], -1).argmax(-1, keepdim=True)
    return before & torch.zeros_like(before).scatter(-1, latest, True)


def mask_first_item(text_positions, media_positions, media_items):
    # Plausible mistake: the first item before the text instead of the most recent one.
    before = media_visibility_mask(text_positions, media_positions, rule="all")
    big = torch.iinfo(media_positions.dtype).max
    first = torch.where(before, media_positions[:, None, :], big).argmin(-1)
    return before & (media_items[:, None, :] == media_items.gather(1, first)[:, :, None])


# === lesson 06, any_to_any: plausible mistakes ====================


def _media(modality, data, predict):
    return (image_segment if modality == "image" else audio_segment)(data, predict=predict)


def trains_the_prompt(direction, tokenizer, source, target=None):
    # Plausible mistake: every segment is trained, so the model also learns to write prompts.
    return [
        grading_copy(s, predict=True) for s in make_document(direction, tokenizer, source, target)
    ]


def grading_copy(segment, predict):
    return type(segment)(segment.modality, segment.data, segment.grid, predict)


def task_after_input(direction, tokenizer, source, target=None):
    # Plausible mistake: the input first, then the task token.
    d = get_direction(direction)
    if d.source == "text":
        doc = [text_segment([*tokenizer.encode(source), tokenizer[d.task]], predict=False)]
    else:
        doc = [_media(d.source, source, False), text_segment([tokenizer[d.task]], predict=False)]
    if target is None:
        return doc
    if d.target == "text":
        return [*doc, text_segment(tokenizer.encode(target))]
    return [*doc, _media(d.target, target, True)]


def caption_without_task(direction, tokenizer, source, target=None):
    # Plausible mistake: a text prompt is just the caption; the task token is forgotten.
    doc = make_document(direction, tokenizer, source, target)
    if get_direction(direction).source == "text":
        doc[0] = text_segment(tokenizer.encode(source), predict=False)
    return doc


# === lesson 07, scaling_laws: plausible mistakes ====================


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


# === lesson 08, cost_and_serving: plausible mistakes ====================


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


# === lesson 09, evaluation: plausible mistakes ====================


def any_rotation(answerer, item):
    # Plausible mistake: right if *some* rotation is right (too lenient).
    rotations = [rotate(item, s) for s in range(len(item.options))]
    return any(
        c == r.answer_index for c, r in zip(choose(answerer, rotations), rotations, strict=True)
    )


def answer_not_moved(answerer, item):
    # Plausible mistake: rotate the options but compare with the original answer_index.
    n = len(item.options)
    rotations = [replace(item, options=item.options[s:] + item.options[:s]) for s in range(n)]
    return all(c == item.answer_index for c in choose(answerer, rotations))


def only_one_rotation(answerer, item):
    # Plausible mistake: vanilla evaluation (ask once).
    return choose(answerer, [item])[0] == item.answer_index


def image_only_blanked(answerer, items):
    # Plausible mistake: blank the picture but leave the sound.
    items = [replace(it, image=torch.zeros_like(it.image)) for it in items]
    return sum(
        c == it.answer_index for c, it in zip(choose(answerer, items), items, strict=True)
    ) / len(items)


def not_blanked(answerer, items):
    # Plausible mistake: plain accuracy, nothing hidden.
    return sum(
        c == it.answer_index for c, it in zip(choose(answerer, items), items, strict=True)
    ) / len(items)


def blanked_with(fill):
    """blind_accuracy, but the inputs are replaced by ``fill(x)`` instead of zeros."""

    def blind_accuracy_filled(answerer, items):
        items = [replace(it, image=fill(it.image), mel=fill(it.mel)) for it in items]
        chosen = choose(answerer, items)
        return sum(c == it.answer_index for c, it in zip(chosen, items, strict=True)) / len(items)

    return blind_accuracy_filled


# Named versions of mistakes and right answers that the old files wrote inline.
def grouped_by_modality(doc, specials=None):
    # Plausible mistake: every text first, then the pictures, then the sounds.
    return _walk(doc, specials, group_by_modality=True)


def markers_skipped(doc, specials=None):
    # Plausible mistake: no <boi>/<eoi>, <boa>/<eoa> around the media.
    return _walk(doc, specials, skip_markers=True)


def walk_in_order(doc, specials=None):
    # Right: a plain walk over the segments in order.
    return _walk(doc, specials)


def kv_cache_bytes_as_numpy(*args):
    # Right: a NumPy integer is a number too.
    return np.int64(kv_cache_bytes(*args))


def qwen2vl_image_tokens_as_tensor(*args, **kwargs):
    # Right: a one-element tensor is a number too.
    return torch.tensor(qwen2vl_image_tokens(*args, **kwargs))


def named(fn, name):
    """``fn`` under ``name`` (for mistakes made by a builder, so each row has its own id)."""
    fn.__name__ = name
    return fn


# ============================================================================ the table


@dataclass(frozen=True)
class Row:
    """One check: the lesson, the check, its reference, other right answers it must accept,
    and the plausible mistakes it must reject (``FAILED``; those in ``may_error`` may also
    end as ``ERROR``)."""

    lesson: str
    check: Callable
    reference: Callable
    mistakes: tuple[Callable, ...]
    also_right: tuple[Callable, ...] = ()
    may_error: tuple[Callable, ...] = ()


TABLE = [
    Row(
        "00",
        check_to_unit_range,
        to_unit_range,
        (whole_batch, no_eps, range_clamped_at_eps, eps_only_when_constant, eps_ignored),
    ),
    Row(
        "01",
        check_projector,
        ProjectorReference,
        projector_mistakes.MISTAKES,
        also_right=(projector_mistakes.ProjectorWritten,),
    ),
    Row(
        "01",
        check_place_segments,
        place_segments,
        (grouped_by_modality, markers_skipped),
        also_right=(walk_in_order,),
    ),
    Row(
        "02",
        check_attention_mask,
        attention_mask,
        (mask_all_minus_one_is_a_span, mask_sees_the_future, mask_assumes_padding_at_the_end),
    ),
    Row("02", check_apply_rope, apply_rope, (rope_turns_backwards, rope_halves_concatenated)),
    Row(
        "02",
        check_kv_cache_step,
        kv_step,
        (kv_step_causal_flag, kv_step_no_scale, kv_step_forgets_to_store),
    ),
    Row(
        "02",
        check_decoder_block,
        Block,
        block_mistakes.BLOCK_MISTAKES,
        also_right=(block_mistakes.BlockWritten,),
    ),
    Row(
        "02",
        check_cached_step,
        Block,
        block_mistakes.STEP_MISTAKES,
        also_right=(block_mistakes.BlockWritten,),
        may_error=block_mistakes.STEP_MAY_ERROR,
    ),
    Row(
        "03",
        check_quantize,
        quantize_straight_through,
        (no_straight_through, forgot_detach, farthest_code),
    ),
    Row("03", check_ema_update, ema_codebook_update, (no_smoothing, decay_swapped)),
    Row(
        "03",
        check_vector_quantizer,
        VQLayerReference,
        vq_mistakes.MISTAKES,
        also_right=(vq_mistakes.VQLayerWritten,),
    ),
    Row(
        "04",
        check_flow_matching_loss,
        flow_matching_loss,
        (reversed_path, target_is_the_data, *head_mistakes.LOSS_FUNCTION_MISTAKES),
    ),
    Row(
        "04",
        check_adaln_block,
        AdaLNBlock,
        head_mistakes.ADALN_MISTAKES,
        also_right=(head_mistakes.AdaLNWritten,),
    ),
    Row(
        "04",
        check_conditioned_mlp,
        ConditionedMLP,
        head_mistakes.MLP_MISTAKES,
        also_right=(head_mistakes.MLPWritten,),
    ),
    Row(
        "04",
        check_flow_head,
        FlowHead,
        head_mistakes.HEAD_MISTAKES,
        also_right=(head_mistakes.HeadWritten,),
    ),
    Row(
        "04b",
        check_masked_after,
        masked_after,
        (rounded_up, no_reveal_cap, linear_schedule, sine_schedule, one_step_late),
    ),
    Row(
        "04b",
        check_unmask_by_confidence,
        unmask_by_confidence,
        (
            remasks_revealed,
            keeps_the_surest_hidden,
            overwrites_revealed,
            ranks_the_whole_batch,
            keeps_one_too_many,
        ),
    ),
    Row(
        "04b",
        check_span_flow_loss,
        span_flow_loss,
        (
            time_per_token,
            span_path_reversed,
            span_target_is_noise_minus_data,
            one_token_at_a_time,
            summed_not_averaged,
            times_per_token_to_the_denoiser,
        ),
        may_error=(time_per_token,),
    ),
    Row(
        "04",
        check_euler_step,
        euler_step,
        (step_backwards, velocity_at_the_end, one_time_for_all, *head_mistakes.EULER_MISTAKES),
    ),
    Row(
        "05",
        check_media_visibility_mask,
        media_visibility_mask,
        (
            mask_every_earlier_item,
            mask_including_padding,
            mask_transposed,
            mask_future,
            mask_latest_token_only,
            mask_first_item,
        ),
    ),
    Row(
        "05",
        check_gated_cross_attention,
        GatedCrossAttention,
        fusion_mistakes.LAYER_MISTAKES,
        also_right=fusion_mistakes.LAYER_RIGHT,
        may_error=fusion_mistakes.LAYER_MAY_ERROR,
    ),
    Row(
        "06",
        check_make_document,
        make_document,
        (trains_the_prompt, task_after_input, caption_without_task),
    ),
    Row(
        "06",
        check_omni_loss,
        OmniLM,
        a2a_mistakes.LOSS_MISTAKES,
        also_right=a2a_mistakes.LOSS_RIGHT,
    ),
    Row(
        "07",
        check_huber_log_objective,
        huber_log_objective,
        (huber_mean, huber_linear_space, huber_without_e, squared),
    ),
    Row(
        "07",
        check_compute_optimal_split,
        compute_optimal_split,
        (split_without_six, split_swapped_exponents),
    ),
    Row(
        "08",
        check_kv_cache_bytes,
        kv_cache_bytes,
        (keys_only, forgot_batch),
        also_right=(kv_cache_bytes_as_numpy,),
    ),
    Row(
        "08",
        check_qwen2vl_image_tokens,
        qwen2vl_image_tokens,
        (
            floor_sides,
            no_limits,
            patches_not_merged,
            # (29, 28) passed every case before the elongated scale-up cases were added.
            *(
                named(scale_up_divisor(h, w), f"scale_up_divided_by_{h}_and_{w}")
                for h, w in [(29, 28), (27, 28), (28, 29), (28, 27)]
            ),
            *(named(wrong, name) for name, wrong in sorted(QWEN_MISTAKES.items())),
        ),
        also_right=(qwen2vl_image_tokens_as_tensor,),
    ),
    Row(
        "08",
        check_step,
        step,
        (step_without_transfer, step_always_transfers, step_that_never_restarts),
        also_right=(step_with_handoff(lambda deployment, stage: deployment.handoff_time(stage)),),
        # a stalled server leaves requests unfinished: the simulation reports it as an error
        may_error=(step_that_never_restarts,),
    ),
    Row(
        "08",
        check_train_step,
        TrainStep,
        step_mistakes.TRAIN_STEP_MISTAKES,
        also_right=(step_mistakes.WrittenStep,),
    ),
    Row(
        "09",
        check_circular_correct,
        circular_correct,
        (any_rotation, answer_not_moved, only_one_rotation),
    ),
    Row(
        "09",
        check_blind_accuracy,
        blind_accuracy,
        (
            image_only_blanked,
            not_blanked,
            *(
                named(blanked_with(fill), f"blanked_with_{fill.__name__}")
                for fill in (torch.ones_like, torch.rand_like, torch.randn_like)
            ),
        ),
    ),
]


def _params(pairs):
    return [
        pytest.param(row, fn, id=f"{row.check.__name__}-{fn.__name__}", marks=row_mark(row))
        for row, fn in pairs
    ]


def row_mark(row: Row):
    return getattr(pytest.mark, f"lesson{row.lesson}")


ROWS = [pytest.param(row, id=row.check.__name__, marks=row_mark(row)) for row in TABLE]


@pytest.mark.parametrize("row", ROWS)
def test_the_reference_passes(row):
    assert row.check(row.reference).passed


@pytest.mark.parametrize("row, right", _params((r, f) for r in TABLE for f in r.also_right))
def test_another_right_answer_passes(row, right):
    assert row.check(right).passed


@pytest.mark.parametrize("row", ROWS)
def test_the_exercise_stub_is_not_implemented(row):
    assert row.check(stub).status == grading.NOT_IMPLEMENTED


@pytest.mark.parametrize("row, wrong", _params((r, f) for r in TABLE for f in r.mistakes))
def test_a_plausible_mistake_is_rejected(row, wrong):
    with grading.lenient():
        status = row.check(wrong).status
    allowed = {grading.FAILED, grading.ERROR} if wrong in row.may_error else {grading.FAILED}
    assert status in allowed


def test_every_lesson_check_is_in_the_table():
    in_table = {row.check for row in TABLE}
    checks = [
        getattr(module, name)
        for module in grading.check_modules()
        for name in dir(module)
        if name.startswith("check_") and getattr(module, name).__module__ == module.__name__
    ]
    assert [c.__name__ for c in checks if c not in in_table] == []


# ============================================================================ beyond the table
# Behaviour a row cannot state: hints aimed at a case, the learner's own line, properties of
# the references the lessons rely on.


@pytest.mark.lesson00
def test_reference_output_spans_unit_range():
    out = to_unit_range(torch.rand(4, 3, 5, 5) * 7 - 2)
    assert torch.allclose(out.amin(dim=(1, 2, 3)), torch.zeros(4))
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(4), atol=1e-6)


@pytest.mark.lesson00
def test_hints_are_aimed_at_the_failure():
    grading.reset_attempts()
    with grading.lenient():
        assert "keepdim" in check_to_unit_range(flattened).hint  # the shape hint
        assert "clamp" in check_to_unit_range(range_clamped_at_eps).hint  # that case's hint
        assert "per image" in check_to_unit_range(stub).hint  # the nudge
    grading.reset_attempts()


@pytest.mark.lesson02
def test_reference_rope_keeps_scores_relative():
    """The property the lesson relies on: q.k after RoPE depends on p - s only."""
    from omni_edu.model.transformer import rope_angles, rope_cos_sin, rope_frequencies

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 16, generator=g)
    inv_freq = rope_frequencies(16)

    def rotated(v, position):
        cos, sin = rope_cos_sin(rope_angles(torch.tensor([[position]]), inv_freq))
        return apply_rope(v, cos, sin)

    near = (rotated(q, 7) * rotated(k, 4)).sum()
    shifted = (rotated(q, 27) * rotated(k, 24)).sum()
    assert torch.allclose(near, shifted, atol=1e-5)


@pytest.mark.lesson02
def test_decode_with_cache_matches_the_decoder_with_its_kv_cache():
    """The package's Decoder, fed one token at a time through its KVCache, equals one
    full causal pass: the behaviour the exercise's step reproduces inside a layer."""
    from omni_edu.model.transformer import Decoder, DecoderConfig, KVCache

    torch.manual_seed(0)
    decoder = Decoder(DecoderConfig(d_model=32, n_layers=2, n_heads=4)).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        full = decoder(x)
        cache = KVCache(decoder.config, batch_size=2, max_len=7)
        steps = [decoder(x[:, t : t + 1], cache=cache) for t in range(7)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    out, k_cache, _ = decode_with_cache(kv_step, *torch.randn(3, 1, 2, 5, 4))
    assert out.shape == (1, 2, 5, 4) and k_cache.shape == (1, 2, 5, 4)


@pytest.mark.lesson02
def test_kv_check_names_the_bad_return_value_not_the_wrapper():
    with grading.lenient():
        result = check_kv_cache_step(kv_step_returns_only_out)
    text = str(result)
    assert result.status == grading.FAILED
    assert "(out, k_cache, v_cache)" in text and "returned a tensor" in text
    assert "step_fn(" not in text and "interleaved_autoregression.py" not in text


@pytest.mark.lesson02
def test_kv_check_shows_the_learners_own_line_when_it_raises():
    with grading.lenient():
        result = check_kv_cache_step(kv_step_appends_on_the_wrong_axis)
    text = str(result)
    assert result.status == grading.ERROR
    assert "test_checks.py" in text
    assert "k_cache = torch.cat([k_cache, k], dim=3)" in text


@pytest.mark.lesson02
def test_the_left_padding_case_gets_its_own_hint():
    grading.reset_attempts()
    with grading.lenient():
        result = check_attention_mask(mask_assumes_padding_at_the_end)
    assert "START of a row" in result.first_failure().label
    assert "anywhere in a row" in result.hint
    grading.reset_attempts()


@pytest.mark.lesson03
def test_a_quantiser_without_straight_through_is_told_about_the_gradient():
    with grading.lenient():
        assert "gradient" in str(check_quantize(no_straight_through))


@pytest.mark.lesson04
def test_a_time_tensor_of_shape_one_is_rejected_with_the_shape_hint():
    with grading.lenient():
        result = check_euler_step(one_time_for_all)
    assert result.status == grading.FAILED
    failure = result.first_failure()
    assert "embeds t per token" in failure.label and "shape (1,)" in failure.message
    assert "torch.full((x_t.shape[0],), t)" in result.hint


@pytest.mark.lesson05
def test_mask_hints_are_graduated():
    with grading.lenient():
        stub_hint = check_media_visibility_mask(stub).hint
        wrong_rule = check_media_visibility_mask(mask_every_earlier_item)
        padding = check_media_visibility_mask(mask_including_padding)
        recipe = check_media_visibility_mask(mask_every_earlier_item, show_recipe=True).recipe
    assert "gather" not in stub_hint  # an untouched stub gets a nudge, not the code
    assert "most recent item" in wrong_rule.hint  # the hint of the case it failed
    assert "padding" in padding.hint
    assert "gather" in recipe


@pytest.mark.lesson07
def test_a_malformed_answer_fails_without_crashing():
    with grading.lenient():
        result = check_compute_optimal_split(lambda C, **law: 1.0)
        assert result.status == grading.FAILED
        result = check_huber_log_objective(lambda theta, *args: torch.zeros(3))
        assert result.status == grading.FAILED


@pytest.mark.lesson08
def test_the_witness_of_the_scale_up_divisor_mutant():
    # 31x372 scaled up to min_pixels = 40000: 75 tokens; dividing the height by 29, 50.
    assert qwen2vl_image_tokens(31, 372, min_pixels=40_000) == 75
    assert scale_up_divisor(29, 28)(31, 372, min_pixels=40_000) == 50


@pytest.mark.lesson08
def test_strict_mode_raises_on_a_wrong_answer():
    with pytest.raises(grading.CheckFailed):
        check_kv_cache_bytes(keys_only)


@pytest.mark.lesson08
def test_the_mistake_builder_matches_the_reference_when_nothing_is_swapped():
    right = smart_resize_tokens()
    sizes = [(h, w) for h in range(5, 3000, 97) for w in range(5, 3000, 89)]
    assert all(
        right(h, w) == qwen2vl_image_tokens(h, w) for h, w in sizes if max(h, w) <= 200 * min(h, w)
    )


@pytest.mark.lesson08
def test_the_boundary_case_gets_the_off_by_one_hint():
    grading.reset_attempts()
    with grading.lenient():
        result = check_qwen2vl_image_tokens(QWEN_MISTAKES[">= instead of > at max_pixels"])
    assert "exactly max_pixels" in result.first_failure().label
    assert "Off by one" in result.hint and "recipe" not in str(result).split("more help")[0]
    grading.reset_attempts()
