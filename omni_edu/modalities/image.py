"""Images as tokens: cut a picture into square patches, one token per patch.

This is the ViT recipe: a ``p x p`` patch of an RGB image is flattened into a vector of
``3 * p * p`` numbers. Patches are listed in raster order (left to right, top to
bottom), and each vector lists channel first, then rows, then columns - the same
layout as ``torch.nn.functional.unfold``.
"""

from __future__ import annotations

import torch


def patch_grid(height: int, width: int, patch: int) -> tuple[int, int]:
    """Rows and columns of patches for an image of ``height x width`` pixels.

    >>> patch_grid(16, 16, 4)
    (4, 4)
    """
    if not isinstance(patch, int) or patch <= 0:
        raise ValueError(f"patch should be a positive int; got {patch!r}")
    if height % patch or width % patch:
        raise ValueError(
            f"an image of {height}x{width} pixels does not split into {patch}x{patch} "
            f"patches; choose a patch size that divides both sides"
        )
    return height // patch, width // patch


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images should be (batch, 3, height, width); got {tuple(images.shape)}. "
            "For one image use image[None]."
        )


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut images into flattened patches.

    images: ``(batch, 3, H, W)`` -> ``(batch, (H/p) * (W/p), 3 * p * p)`` in raster order.
    """
    _check_images(images)
    batch, channels, height, width = images.shape
    rows, cols = patch_grid(height, width, patch)
    x = images.reshape(batch, channels, rows, patch, cols, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (batch, rows, cols, channels, p, p)
    return x.reshape(batch, rows * cols, channels * patch * patch)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`.

    patches: ``(batch, n_patches, 3 * p * p)`` -> images ``(batch, 3, height, width)``.
    """
    rows, cols = patch_grid(height, width, patch)
    expected = (rows * cols, 3 * patch * patch)
    if patches.dim() != 3 or tuple(patches.shape[1:]) != expected:
        raise ValueError(
            f"patches should be (batch, {expected[0]}, {expected[1]}) for a {height}x{width} "
            f"image with {patch}x{patch} patches; got {tuple(patches.shape)}"
        )
    batch = patches.shape[0]
    x = patches.reshape(batch, rows, cols, 3, patch, patch)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (batch, channels, rows, p, cols, p)
    return x.reshape(batch, 3, height, width)
