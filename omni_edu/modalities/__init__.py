"""Turning each modality into tokens: text ids, image patches, audio frames."""

from enum import IntEnum


class Modality(IntEnum):
    """Which modality a token belongs to. Padding positions carry ``PAD`` (-1)."""

    TEXT = 0
    IMAGE = 1
    AUDIO = 2


PAD = -1

__all__ = ["PAD", "Modality"]
