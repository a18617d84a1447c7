"""The KV cache: keys and values of the tokens a decoder has already seen.

Generating token ``n`` needs the keys and values of every earlier token in every block.
Without a cache the decoder recomputes them at each step; with one, the prompt runs once
(the *prefill*) and each step feeds only the newest token and appends its keys and
values. :class:`KVCache` holds the storage of all blocks; block ``i`` of the
:class:`~omni_edu.model.transformer.Decoder` reads its own view ``cache[i]`` (a
:class:`BlockCache`) and returns it grown by the new tokens, as in nanoVLM::

    x, cache[i], _ = block(x, cos=cos, sin=sin, mask=mask, cache=cache[i])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from omni_edu.model.transformer import DecoderConfig


@dataclass(frozen=True, eq=False)
class BlockCache:
    """One block's view of the KV cache: its key and value storage, and how much of it
    holds tokens.

    The storage is preallocated (see :class:`KVCache`) so that a decoding step writes in
    place instead of copying the whole past; :meth:`append` returns the view that includes
    the new tokens, and the block hands that view back to the decoder.
    """

    k_store: Tensor  # (batch, n_kv_heads, max_len, head_dim), keys after rotation
    v_store: Tensor  # (batch, n_kv_heads, max_len, head_dim)
    length: int = 0  # tokens stored so far

    @property
    def k(self) -> Tensor:
        """Keys so far, ``(batch, n_kv_heads, length, head_dim)``."""
        return self.k_store[:, :, : self.length]

    @property
    def v(self) -> Tensor:
        """Values so far, ``(batch, n_kv_heads, length, head_dim)``."""
        return self.v_store[:, :, : self.length]

    def append(self, k: Tensor, v: Tensor) -> BlockCache:
        """Store ``k, v`` ``(batch, n_kv_heads, new, head_dim)`` after the tokens so far."""
        end = self.length + k.shape[2]
        self.k_store[:, :, self.length : end] = k  # converted to the storage's dtype
        self.v_store[:, :, self.length : end] = v
        return replace(self, length=end)


class KVCache:
    """Keys and values of every block for the tokens processed so far.

    Preallocated for ``max_len`` tokens (default ``config.max_seq_len``). Keys are stored
    *after* rotation, with ``n_kv_heads`` heads (that is where GQA saves memory). Index it
    like a list of :class:`BlockCache`: ``cache[i]`` is block ``i``'s view, and the decoder
    puts back the view each block returns.

    Args:
        config: the decoder's config.
        batch_size: sequences decoded side by side.
        max_len: most tokens (prompt + generated) the cache can hold.
        device, dtype: where and how to store; inputs of another dtype (for example
            under bf16 autocast) are converted on the way in and out.
    """

    def __init__(
        self,
        config: DecoderConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = config.max_seq_len if max_len is None else max_len
        shape = (config.n_layers, batch_size, config.n_kv_heads, self.max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.reset()

    def __getitem__(self, block: int) -> BlockCache:
        return self.blocks[block]

    def __setitem__(self, block: int, view: BlockCache) -> None:
        self.blocks[block] = view

    @property
    def length(self) -> int:
        """Tokens stored (the same in every block between calls)."""
        return self.blocks[0].length

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def nbytes(self) -> int:
        """Memory the cache occupies, in bytes."""
        return self.k.nbytes + self.v.nbytes

    def reset(self) -> None:
        """Forget everything (the memory stays allocated for the next sequence)."""
        self.blocks = [BlockCache(k, v) for k, v in zip(self.k, self.v, strict=True)]
