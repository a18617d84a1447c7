"""OmniWorld scenes: a few objects, each with a shape, colour, size and position.

A scene is stored two ways. For people: a :class:`Scene` of :class:`SceneObject`s with
readable names. For models: an int tensor ``attributes (batch, max_objects, 4)`` whose
last axis holds (shape, colour, size, position) indices, plus a boolean ``mask
(batch, max_objects)`` that is False for absent objects (their attributes are -1).
Objects inside a scene are listed in reading order of their positions.

Positions are the four cells of a 2x2 grid, so "left of" and "above" are always well
defined and objects never overlap (one object per cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch

SHAPES = ("circle", "square", "triangle", "cross")
# Rainbow order: the colour's pitch rises along this list, like the frequency of light.
COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple")
SIZES = ("small", "large")
# Cells of the 2x2 grid in reading order: index = 2 * row + column.
POSITIONS = ("top left", "top right", "bottom left", "bottom right")

ATTRIBUTES = ("shape", "colour", "size", "position")
VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "position": POSITIONS,
}
SHAPE, COLOUR, SIZE, POSITION = range(4)  # columns of the attributes tensor
MAX_OBJECTS = len(POSITIONS)
ABSENT = -1  # attribute value of a missing object

SPLITS = ("train", "test", "heldout")
# Shape-colour pairs that never appear in "train"/"test", only in "heldout". Every
# shape and every colour still appears in training, just never in these combinations,
# which is what compositional generalisation asks a model to bridge.
HELDOUT_PAIRS = (
    ("circle", "green"),
    ("square", "blue"),
    ("triangle", "red"),
    ("cross", "yellow"),
)


def value_index(attribute: str, value: str) -> int:
    """Index of ``value`` in ``VALUES[attribute]``, e.g. ``value_index("colour", "red") == 0``."""
    if attribute not in VALUES:
        raise ValueError(f"attribute should be one of {ATTRIBUTES}; got {attribute!r}")
    values = VALUES[attribute]
    if value not in values:
        raise ValueError(f"{attribute} should be one of {values}; got {value!r}")
    return values.index(value)


def value_name(attribute: str, index: int) -> str:
    """Name of value ``index`` of ``attribute``, e.g. ``value_name("shape", 0) == "circle"``."""
    if attribute not in VALUES:
        raise ValueError(f"attribute should be one of {ATTRIBUTES}; got {attribute!r}")
    values = VALUES[attribute]
    if not 0 <= int(index) < len(values):
        raise ValueError(f"{attribute} index should be in 0..{len(values) - 1}; got {index}")
    return values[int(index)]


def n_values(attribute: str) -> int:
    """How many values ``attribute`` can take: the number of classes of a probe."""
    if attribute not in VALUES:
        raise ValueError(f"attribute should be one of {ATTRIBUTES}; got {attribute!r}")
    return len(VALUES[attribute])


def row_col(position: str | int) -> tuple[int, int]:
    """Grid row (0 = top) and column (0 = left) of a position name or index."""
    index = value_index("position", position) if isinstance(position, str) else int(position)
    return divmod(index, 2)


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene, e.g. ``SceneObject("circle", "red", "small", "top left")``."""

    shape: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for attribute in ATTRIBUTES:
            value_index(attribute, getattr(self, attribute))

    def indices(self) -> tuple[int, int, int, int]:
        """(shape, colour, size, position) as indices: one row of the attributes tensor."""
        return tuple(value_index(a, getattr(self, a)) for a in ATTRIBUTES)  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.size} {self.colour} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    """The objects of one scene, in reading order of their positions."""

    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects; got {len(self.objects)}")
        positions = [o.position for o in self.objects]
        if len(set(positions)) != len(positions):
            raise ValueError(f"two objects share a position (objects never overlap): {positions}")
        ordered = tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position)))
        object.__setattr__(self, "objects", ordered)

    def __len__(self) -> int:
        return len(self.objects)

    def __str__(self) -> str:
        return "; ".join(str(o) for o in self.objects)


def scenes_to_tensor(
    scenes: Sequence[Scene], max_objects: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes -> ``attributes (batch, max_objects, 4)`` int64 and ``mask (batch, max_objects)``."""
    if len(scenes) == 0:
        raise ValueError("scenes is empty; expected at least one Scene")
    longest = max(len(s) for s in scenes)
    max_objects = longest if max_objects is None else max_objects
    if max_objects < longest:
        raise ValueError(f"max_objects={max_objects} but a scene has {longest} objects")
    attributes = torch.full((len(scenes), max_objects, 4), ABSENT, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for j, obj in enumerate(scene.objects):
            attributes[i, j] = torch.tensor(obj.indices())
    return attributes, attributes[..., 0] != ABSENT


def tensor_to_scenes(attributes: torch.Tensor, mask: torch.Tensor) -> list[Scene]:
    """Inverse of :func:`scenes_to_tensor`."""
    check_attributes(attributes, mask)
    scenes = []
    for rows, present in zip(attributes.tolist(), mask.tolist(), strict=True):
        objects = tuple(_object(*r) for r, p in zip(rows, present, strict=True) if p)
        scenes.append(Scene(objects))
    return scenes


@cache
def _object(shape: int, colour: int, size: int, position: int) -> SceneObject:
    # Only 192 distinct objects exist; reusing them makes big batches cheap to list.
    return SceneObject(SHAPES[shape], COLOURS[colour], SIZES[size], POSITIONS[position])


def check_attributes(attributes: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``attributes``/``mask`` describe valid scenes."""
    if attributes.dim() != 3 or attributes.shape[-1] != 4:
        raise ValueError(
            f"attributes should be (batch, max_objects, 4) holding (shape, colour, size, "
            f"position) indices; got {tuple(attributes.shape)}"
        )
    if mask.shape != attributes.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask should be a bool tensor of shape {tuple(attributes.shape[:2])}; "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    limits = torch.tensor([len(VALUES[a]) for a in ATTRIBUTES])
    present = attributes[mask]
    bad = (present < 0) | (present >= limits)
    if bad.any():
        column = int(bad.any(0).nonzero()[0])
        name = ATTRIBUTES[column]
        raise ValueError(
            f"{name} indices should be in 0..{limits[column] - 1}; "
            f"got {sorted(set(present[:, column].tolist()))}"
        )


def allowed_pairs(split: str) -> torch.Tensor:
    """(shape, colour) index pairs a split may use: ``(n_pairs, 2)`` int64."""
    if split not in SPLITS:
        raise ValueError(f"split should be one of {SPLITS}; got {split!r}")
    held = {(value_index("shape", s), value_index("colour", c)) for s, c in HELDOUT_PAIRS}
    pairs = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]
    keep = [p for p in pairs if (p in held) == (split == "heldout")]
    return torch.tensor(keep)


def sample_attributes(
    n: int,
    n_objects: tuple[int, int],
    split: str,
    generator: torch.Generator,
    max_objects: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` random scenes as ``(attributes (n, max_objects, 4), mask (n, max_objects))``.

    Each scene gets between ``n_objects[0]`` and ``n_objects[1]`` objects in distinct
    cells; every object's shape-colour pair comes from ``allowed_pairs(split)``.
    """
    low, high = n_objects
    max_objects = high if max_objects is None else max_objects
    counts = torch.randint(low, high + 1, (n,), generator=generator)
    mask = torch.arange(max_objects) < counts[:, None]
    # A random permutation of the cells per scene; absent objects sort to the end.
    cells = torch.rand(n, MAX_OBJECTS, generator=generator).argsort(dim=1)[:, :max_objects]
    cells = torch.where(mask, cells, MAX_OBJECTS).sort(dim=1).values
    pairs = allowed_pairs(split)
    pair = pairs[torch.randint(len(pairs), (n, max_objects), generator=generator)]
    size = torch.randint(len(SIZES), (n, max_objects), generator=generator)
    attributes = torch.stack([pair[..., 0], pair[..., 1], size, cells], dim=-1)
    attributes[~mask] = ABSENT
    return attributes, mask
