"""Draw OmniWorld scenes as small RGB pictures, a whole batch at once.

Each shape is a signed distance function (negative inside, in pixels), so one formula
draws it at any size, and ``clamp(0.5 - distance, 0, 1)`` gives soft, anti-aliased
edges for free. Jitter (position inside the cell, radius, colour) and pixel noise make
every sample different while the attributes stay readable at 16x16.
"""

from __future__ import annotations

import torch

from omni_edu.data.scene import COLOUR, POSITION, SHAPE, SHAPES, SIZE, check_attributes

# RGB of each colour, in the order of COLOURS.
RGB = torch.tensor(
    [
        [0.92, 0.15, 0.12],  # red
        [0.95, 0.85, 0.10],  # yellow
        [0.15, 0.75, 0.20],  # green
        [0.10, 0.80, 0.85],  # cyan
        [0.20, 0.35, 0.95],  # blue
        [0.65, 0.25, 0.85],  # purple
    ]
)
BACKGROUND = 0.08
RADIUS = torch.tensor([0.27, 0.40])  # of the cell side, in the order of SIZES
RADIUS_JITTER = 0.08  # relative
COLOUR_JITTER = 0.06  # per channel
NOISE = 0.03  # standard deviation of pixel noise
# A prompt picture that leaves colour free paints its object in this grey (the same for
# every colour, so brightness gives no hint of the hidden colour).
GREY = 0.6
EXTENT = 1.1  # every shape fits in a circle of EXTENT * radius


def _shape_distance(shape: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor):
    """Signed distance (pixels) from pixel offsets ``dx, dy`` to a shape of radius ``r``."""
    name = SHAPES[shape]
    if name == "circle":
        return torch.sqrt(dx**2 + dy**2) - r
    if name == "square":  # same area as the other shapes, roughly
        return torch.maximum(dx.abs(), dy.abs()) - 0.8 * r
    if name == "triangle":  # equilateral, pointing up, centred on its middle
        big = 1.2 * r
        dy = dy - 0.15 * r
        edges = [dy, -0.866 * dx - 0.5 * dy, 0.866 * dx - 0.5 * dy]
        return torch.maximum(torch.maximum(edges[0], edges[1]), edges[2]) - big / 2
    # cross: the union (min) of a horizontal and a vertical bar
    arm, half = 0.35 * r, r
    horizontal = torch.maximum(dx.abs() - half, dy.abs() - arm)
    vertical = torch.maximum(dx.abs() - arm, dy.abs() - half)
    return torch.minimum(horizontal, vertical)


def render_images(
    attributes: torch.Tensor,
    mask: torch.Tensor,
    image_size: int,
    generator: torch.Generator | None = None,
    noise: float = NOISE,
    grey: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw scenes.

    attributes: ``(batch, max_objects, 4)`` int (shape, colour, size, position);
    mask: ``(batch, max_objects)`` bool. grey: optional ``(batch,)`` bool; the objects
    of those scenes are painted in achromatic :data:`GREY` instead of their colour (a
    picture that leaves colour free). Returns images ``(batch, 3, image_size,
    image_size)`` in [0, 1]. The random draws do not depend on the attribute values (nor
    on ``grey``), so the same generator state with one attribute changed, or with the
    colour greyed out, gives the same jitter and noise.
    """
    check_attributes(attributes, mask)
    if not isinstance(image_size, int) or image_size < 8 or image_size % 2:
        raise ValueError(f"image_size should be an even int >= 8; got {image_size!r}")
    if noise < 0:
        raise ValueError(f"noise should be >= 0; got {noise}")
    batch, max_objects, _ = attributes.shape
    if grey is not None and (grey.shape != (batch,) or grey.dtype != torch.bool):
        raise ValueError(
            f"grey should be a bool tensor of shape ({batch},), one flag per scene; got "
            f"{grey.dtype} {tuple(grey.shape)}"
        )
    cell = image_size / 2
    u_offset = torch.rand(batch, max_objects, 2, generator=generator) * 2 - 1
    u_radius = torch.rand(batch, max_objects, generator=generator) * 2 - 1
    u_colour = torch.rand(batch, max_objects, 3, generator=generator) * 2 - 1
    pixel_noise = torch.randn(batch, 3, image_size, image_size, generator=generator)

    scene_index, slot = mask.nonzero(as_tuple=True)
    objects = attributes[scene_index, slot]  # (n_objects, 4)
    radius = RADIUS[objects[:, SIZE]] * cell * (1 + RADIUS_JITTER * u_radius[scene_index, slot])
    # Room to move inside the cell without touching its border.
    slack = (0.5 * cell - EXTENT * radius - 0.05 * cell).clamp(min=0)
    row, col = objects[:, POSITION] // 2, objects[:, POSITION] % 2
    offset = u_offset[scene_index, slot] * slack[:, None]
    cx = (col + 0.5) * cell + offset[:, 0]
    cy = (row + 0.5) * cell + offset[:, 1]
    jitter = COLOUR_JITTER * u_colour[scene_index, slot]
    rgb = RGB[objects[:, COLOUR]] + jitter
    if grey is not None:
        # The same brightness jitter on all three channels keeps the grey achromatic.
        level = GREY + jitter.mean(dim=1, keepdim=True)
        rgb = torch.where(grey[scene_index, None], level.expand(-1, 3), rgb)
    rgb = rgb.clamp(0, 1)

    pixels = torch.arange(image_size) + 0.5  # pixel centres
    coverage = torch.empty(len(objects), image_size, image_size)
    for shape in range(len(SHAPES)):
        which = objects[:, SHAPE] == shape
        if which.any():
            dx = pixels[None, None, :] - cx[which, None, None]
            dy = pixels[None, :, None] - cy[which, None, None]
            distance = _shape_distance(shape, dx, dy, radius[which, None, None])
            coverage[which] = (0.5 - distance).clamp(0, 1)

    paint = coverage[:, None] * (rgb - BACKGROUND)[:, :, None, None]
    images = torch.full((batch, 3, image_size, image_size), BACKGROUND)
    images.index_add_(0, scene_index, paint)
    return (images + noise * pixel_noise).clamp(0, 1)
