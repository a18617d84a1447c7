"""Flamingo's gated cross-attention: the layer through which text reads media.

* :func:`media_visibility_mask` says which media tokens each text token may read. Flamingo's
  rule (``"recent"``): only the tokens of the **most recent** media item (one image, one
  clip) placed before it; ``"all"``: every media token before it. Never padding, and
  nothing at all for a text token with no media before it.
* :class:`CrossAttention`: multi-head attention from text queries to media keys and values,
  under that mask; a text token that may read nothing gets exactly zero.
* :class:`GatedCrossAttention`: Flamingo's layer, ``x + tanh(a) * xattn(norm(x), media)``
  then ``+ tanh(b) * mlp(norm(.))``, with both gates starting at zero so that a fresh
  layer is the identity.

Lesson 05 has the learner build the last two (its core-build exercise) and trains the
learner's layer inside :class:`~omni_edu.model.fusion.CrossAttentionFusion`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omni_edu.model.transformer import MLP, DecoderConfig, RMSNorm

VISIBILITY = ("recent", "all")


# ----------------------------------------------------------------------------- masks


def media_visibility_mask(
    text_positions: Tensor,
    media_positions: Tensor,
    media_items: Tensor | None = None,
    rule: str = "recent",
) -> Tensor:
    """Which media tokens each text token may read.

    ``rule="recent"`` is Flamingo's: a text token reads only the tokens of the **most
    recent** media item (one image, one clip) placed before it; what earlier items said
    reaches it only through the text in between (causal self-attention). ``rule="all"``
    lets it read every media token placed before it. Either way a text token with no
    media before it reads nothing, and padding is never read.

    Args:
        text_positions: ``(batch, n_text)`` int64 places of the text tokens.
        media_positions: ``(batch, n_media)`` int64 places of the media tokens; ``-1``
            marks padding.
        media_items: ``(batch, n_media)`` int64, which item each media token belongs to
            (the tokens of one image share a number). Needed for ``"recent"``.
        rule: ``"recent"`` or ``"all"``.

    Returns:
        ``(batch, n_text, n_media)`` bool, True = may attend (the convention of
        ``scaled_dot_product_attention``).
    """
    if text_positions.dim() != 2 or media_positions.dim() != 2:
        raise ValueError(
            f"text_positions and media_positions should be (batch, n); got "
            f"{tuple(text_positions.shape)} and {tuple(media_positions.shape)}."
        )
    if rule not in VISIBILITY:
        raise ValueError(f"rule should be one of {VISIBILITY}; got {rule!r}.")
    before = media_positions.unsqueeze(1) < text_positions.unsqueeze(2)
    before = before & (media_positions >= 0).unsqueeze(1)  # (batch, n_text, n_media)
    if rule == "all":
        return before
    if media_items is None or media_items.shape != media_positions.shape:
        got = None if media_items is None else tuple(media_items.shape)
        raise ValueError(
            f'rule="recent" needs media_items (batch, n_media) = '
            f"{tuple(media_positions.shape)}, the item of each media token; got {got}."
        )
    # The latest media token before each text token, and the item it belongs to.
    latest = torch.where(before, media_positions.unsqueeze(1), -1).argmax(dim=-1)
    latest_item = media_items.gather(1, latest)  # (batch, n_text)
    return before & (media_items.unsqueeze(1) == latest_item.unsqueeze(2))


# ----------------------------------------------------------------------------- layers


class CrossAttention(nn.Module):
    """Multi-head attention from text queries to media keys and values.

    No rotary positions: the media encoders already wrote where each patch or frame sits
    into its features, and a text token's distance to a patch means nothing. A text
    token whose ``visible`` row is all False gets exactly zero (not NaN, not an average).
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.q = nn.Linear(config.d_model, config.d_model, bias=False)
        self.kv = nn.Linear(config.d_model, 2 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: Tensor, media: Tensor, visible: Tensor) -> Tensor:
        """x ``(batch, n_text, d)``, media ``(batch, n_media, d)``, visible
        ``(batch, n_text, n_media)`` bool -> ``(batch, n_text, d)``."""
        batch, n_text, d = x.shape
        n_media = media.shape[1]
        if visible.shape != (batch, n_text, n_media):
            raise ValueError(
                f"visible should be (batch, n_text, n_media) = {(batch, n_text, n_media)}; "
                f"got {tuple(visible.shape)}. Build it with media_visibility_mask."
            )
        q = self.q(x).view(batch, n_text, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(media).view(batch, n_media, 2, self.n_heads, self.head_dim).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        # A row with nothing visible would be softmax over nothing (NaN). Let such rows
        # attend everywhere, then zero their output: same result, finite gradients.
        sees_any = visible.any(dim=-1, keepdim=True)  # (batch, n_text, 1)
        mask = (visible | ~sees_any).unsqueeze(1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(batch, n_text, d)
        return self.proj(y) * sees_any


class GatedCrossAttention(nn.Module):
    """Flamingo's gated cross-attention layer, inserted before a decoder block.

    ``x = x + tanh(attn_gate) * xattn(norm(x), media)`` then
    ``x = x + tanh(mlp_gate) * mlp(norm(x))``. Both gates start at zero, so a fresh layer
    returns ``x`` unchanged: a pretrained language model is not disturbed on day one, and
    training opens each gate only as far as the media help.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.xattn = CrossAttention(config)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)
        self.mlp_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, media: Tensor, visible: Tensor) -> Tensor:
        """x ``(batch, n_text, d)``, media ``(batch, n_media, d)``, visible
        ``(batch, n_text, n_media)`` -> ``(batch, n_text, d)``."""
        x = x + torch.tanh(self.attn_gate) * self.xattn(self.attn_norm(x), media, visible)
        return x + torch.tanh(self.mlp_gate) * self.mlp(self.mlp_norm(x))
