"""Autoregressive generation over the decoder, with or without a KV cache.

Generation is a loop: run the decoder, turn the last hidden state into the next token,
embed that token, append it, repeat. What "turn into the next token" means depends on
the modality - a softmax and a sample for text, a regression or flow head for an image
patch or an audio frame - so the loop takes it as a callback::

    next_input(hidden) -> (embedding, output)

``hidden`` is the decoder's last hidden state ``(batch, d_model)``; ``embedding``
``(batch, d_model)`` is what the decoder reads next; ``output`` is what the caller wants
back for this step (token ids ``(batch,)``, a patch ``(batch, patch_dim)``, ...).
:func:`text_step` builds the callback for text: greedy, temperature and top-k sampling.

Without a cache every step reruns the whole sequence: step ``t`` costs ``O(t)`` token
passes, so ``n`` new tokens cost ``O(n^2)``. With a :class:`KVCache` each step runs only
the new token against the stored keys and values: ``O(n)`` in total.
:func:`measure_decode_speed` times both (lesson 02 reports the speed-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from omni_edu.model.transformer import Decoder, KVCache

NextInput = Callable[[Tensor], tuple[Tensor, Tensor]]


def sample_token(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row of ``logits`` ``(batch, vocab)``; returns ids ``(batch,)``.

    ``temperature=0`` is greedy (the most likely token). Otherwise the logits are divided
    by the temperature (below 1 sharpens, above 1 flattens) and, with ``top_k``, every
    token outside the ``k`` most likely is ruled out before sampling.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits should be (batch, vocab); got {tuple(logits.shape)}.")
    if temperature < 0:
        raise ValueError(f"temperature should be >= 0 (0 = greedy); got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k should be a positive number of tokens or None; got {top_k}.")
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_best = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def text_step(
    embed: nn.Module,
    head: nn.Module,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> NextInput:
    """The ``next_input`` callback for text.

    Args:
        embed: token ids ``(batch,)`` -> embeddings ``(batch, d_model)`` (an
            ``nn.Embedding`` or anything that maps ids the same way).
        head: hidden ``(batch, d_model)`` -> logits ``(batch, vocab)``.
        temperature, top_k, generator: see :func:`sample_token`.

    Returns:
        ``hidden -> (embed(ids), ids)``.
    """

    def step(hidden: Tensor) -> tuple[Tensor, Tensor]:
        ids = sample_token(head(hidden), temperature, top_k, generator)
        return embed(ids), ids

    return step


@torch.no_grad()
def generate(
    decoder: Decoder,
    prompt: Tensor,
    next_input: NextInput,
    n_steps: int,
    positions: Tensor | None = None,
    attn_mask: Tensor | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Tensor:
    """Continue ``prompt`` for ``n_steps`` tokens.

    Args:
        decoder: the :class:`Decoder`.
        prompt: input embeddings of the prompt ``(batch, prompt_len, d_model)``.
        next_input: ``hidden (batch, d_model) -> (embedding (batch, d_model), output)``,
            for example :func:`text_step`.
        n_steps: how many tokens to generate.
        positions: positions of the *finished* sequence, ``(batch, total)`` or M-RoPE
            ``(3, batch, total)`` with ``total = prompt_len + n_steps``; ``None`` =
            ``0, 1, 2, ...``. (The last column is never used: nothing runs after the last
            token is chosen.)
        attn_mask: boolean ``(batch, total, total)`` mask of the finished sequence, True =
            may attend; ``None`` = causal. Each step uses the rows of its new token.
        use_cache: feed one new token per step through a :class:`KVCache` (fast), or rerun
            the whole sequence every step (slow; the same result up to float rounding).
        progress: show a progress bar over the steps.

    Returns:
        the outputs of ``next_input``, stacked along dimension 1: ``(batch, n_steps, ...)``
        (token ids ``(batch, n_steps)`` for text).
    """
    batch, prompt_len = _check_prompt(decoder, prompt, n_steps)
    total = prompt_len + n_steps
    if positions is None:
        positions = torch.arange(total, device=prompt.device).expand(batch, total)
    if positions.shape[-2:] != (batch, total):
        raise ValueError(
            f"positions should cover the finished sequence: (batch, {total}) or "
            f"(3, batch, {total}) for {prompt_len} prompt + {n_steps} new tokens; got "
            f"{tuple(positions.shape)}."
        )
    if attn_mask is not None and attn_mask.shape[-2:] != (total, total):
        raise ValueError(
            f"attn_mask should be the finished sequence's mask (batch, {total}, {total}); "
            f"got {tuple(attn_mask.shape)}."
        )

    def run(x: Tensor, start: int, stop: int, cache: KVCache | None) -> Tensor:
        """Hidden state of token ``stop - 1`` after feeding tokens ``start:stop``."""
        mask = None if attn_mask is None else attn_mask[..., start:stop, :stop]
        return decoder(x, positions[..., start:stop], mask, cache=cache)[:, -1]

    cache = None
    if use_cache:
        cache = KVCache(
            decoder.config, batch, max_len=total - 1, device=prompt.device, dtype=prompt.dtype
        )
    hidden = run(prompt, 0, prompt_len, cache)  # the prompt in one call ("prefill")
    sequence, outputs = prompt, []
    for step in tqdm(range(n_steps), desc="generating", disable=not progress):
        embedding, output = next_input(hidden)
        outputs.append(output)
        if step == n_steps - 1:
            break  # the last token is chosen; nothing needs to read it
        new = embedding.unsqueeze(1)  # (batch, 1, d_model)
        end = prompt_len + step + 1
        if use_cache:
            hidden = run(new, end - 1, end, cache)  # only the new token
        else:
            sequence = torch.cat([sequence, new], dim=1)
            hidden = run(sequence, 0, end, None)  # everything again
    return torch.stack(outputs, dim=1)


def _check_prompt(decoder: Decoder, prompt: Tensor, n_steps: int) -> tuple[int, int]:
    d = decoder.config.d_model
    if prompt.dim() != 3 or prompt.shape[-1] != d:
        raise ValueError(
            f"prompt should be input embeddings (batch, prompt_len, {d}); got "
            f"{tuple(prompt.shape)}. Embed token ids first (for example with the projector)."
        )
    if prompt.shape[1] < 1:
        raise ValueError("prompt needs at least one token to condition on.")
    if n_steps < 1:
        raise ValueError(f"n_steps should be at least 1; got {n_steps}.")
    limit = decoder.config.max_seq_len
    if prompt.shape[1] + n_steps - 1 > limit:
        raise ValueError(
            f"{prompt.shape[1]} prompt + {n_steps} new tokens exceed the decoder's "
            f"max_seq_len={limit}."
        )
    return prompt.shape[0], prompt.shape[1]


def measure_decode_speed(
    decoder: Decoder,
    prompt_len: int = 16,
    n_steps: int = 64,
    batch_size: int = 1,
    vocab: int = 256,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Time greedy text generation with and without the KV cache.

    A random embedding table and output head of ``vocab`` tokens stand in for the real
    ones (their cost is the same whatever they learned). Each setting runs ``repeats``
    times after one warm-up; the best time counts (the least disturbed by other work).

    Returns:
        ``cached_tokens_per_s``, ``uncached_tokens_per_s``, ``speedup`` (cached over
        uncached), ``cached_s``, ``uncached_s`` (seconds for ``n_steps`` tokens), and
        ``same_tokens`` (1.0 if both produced the same tokens).
    """
    param = next(decoder.parameters())
    device, d = param.device, decoder.config.d_model
    generator = torch.Generator().manual_seed(seed)
    embed = nn.Embedding(vocab, d).to(device)
    head = nn.Linear(d, vocab, bias=False).to(device)
    prompt = torch.randn(batch_size, prompt_len, d, generator=generator).to(device)
    step = text_step(embed, head)
    was_training = decoder.training
    decoder.eval()

    def timed(use_cache: bool) -> tuple[float, Tensor]:
        best, tokens = float("inf"), None
        for _ in range(repeats + 1):  # the first run is a warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = generate(decoder, prompt, step, n_steps, use_cache=use_cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, tokens

    try:
        cached_s, cached_tokens = timed(True)
        uncached_s, uncached_tokens = timed(False)
    finally:
        decoder.train(was_training)
    tokens = batch_size * n_steps
    return {
        "cached_tokens_per_s": tokens / cached_s,
        "uncached_tokens_per_s": tokens / uncached_s,
        "speedup": uncached_s / cached_s,
        "cached_s": cached_s,
        "uncached_s": uncached_s,
        "same_tokens": float(torch.equal(cached_tokens, uncached_tokens)),
    }
