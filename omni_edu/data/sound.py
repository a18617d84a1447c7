"""Make OmniWorld scenes audible, a whole batch at once.

Every attribute of every object can be heard:

* **position** -> *when* the object sounds. The clip reads the picture like a page:
  four time slots for the four cells (top left, top right, bottom left, bottom right),
  so the top row sounds in the first half and the left column first within each half.
* **shape** -> timbre: circle = pure sine, square = square wave, triangle = triangle
  wave, cross = sawtooth (smooth shapes sound smooth, spiky ones bright).
* **colour** -> pitch, rising in rainbow order (red lowest, purple highest) in steps of
  four semitones.
* **size** -> loudness: large objects are about 9 dB louder than small ones.

Jitter (a little detuning, loudness variation, onset time, start phase) makes every
clip different.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from omni_edu.data.scene import COLOUR, MAX_OBJECTS, POSITION, SHAPE, SIZE, check_attributes

PITCH_HZ = torch.tensor([220.0 * 2 ** (4 * i / 12) for i in range(6)])  # order of COLOURS
LOUDNESS = torch.tensor([0.25, 0.7])  # peak amplitude, order of SIZES
DETUNE_SEMITONES = 0.25
LOUDNESS_JITTER = 0.1  # relative
TONE_FRACTION = 0.75  # of its time slot a tone lasts
ONSET_JITTER = 0.08  # latest start, as a fraction of the slot
RAMP_SECONDS = 0.01  # fade in/out, so tones start and stop without clicks
N_HARMONICS = 24
TABLE_LENGTH = 4096  # samples of one period in a wavetable


def _harmonic_amplitudes() -> torch.Tensor:
    """Fourier amplitudes of each timbre: ``(4, N_HARMONICS)`` in the order of SHAPES."""
    k = torch.arange(1, N_HARMONICS + 1, dtype=torch.float64)
    odd = (k % 2 == 1).double()
    sine = (k == 1).double()
    square = odd / k
    triangle = odd / k**2 * torch.where((k - 1) % 4 == 0, 1.0, -1.0)
    saw = 1 / k * torch.where(k % 2 == 1, 1.0, -1.0)
    return torch.stack([sine, square, triangle, saw])


TIMBRE = _harmonic_amplitudes()


@lru_cache(maxsize=8)
def wavetables(sample_rate: int) -> torch.Tensor:
    """One period of every (shape, colour) tone: ``(4, 6, TABLE_LENGTH)``.

    Synthesis then only looks up samples (a wavetable synthesiser) instead of summing
    sines. Harmonics above 0.45 x the sample rate are left out, so nothing aliases, and
    every table has the same power, so loudness depends on size alone.
    """
    highest_f0 = PITCH_HZ * 2 ** (DETUNE_SEMITONES / 12)
    k = torch.arange(1, N_HARMONICS + 1, dtype=torch.float64)
    audible = k[None, :] * highest_f0[:, None].double() < 0.45 * sample_rate  # (6, H)
    amplitudes = TIMBRE[:, None, :] * audible[None]  # (4, 6, H)
    amplitudes = amplitudes / amplitudes.norm(dim=-1, keepdim=True)
    x = torch.arange(TABLE_LENGTH, dtype=torch.float64) / TABLE_LENGTH
    sines = torch.sin(2 * math.pi * k[:, None] * x[None, :])  # (H, TABLE_LENGTH)
    return (amplitudes @ sines).float()


def synthesize_audio(
    attributes: torch.Tensor,
    mask: torch.Tensor,
    sample_rate: int,
    seconds: float,
    generator: torch.Generator | None = None,
    untimed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sound of each scene.

    attributes: ``(batch, max_objects, 4)`` int (shape, colour, size, position);
    mask: ``(batch, max_objects)`` bool. untimed: optional ``(batch,)`` bool; the tones
    of those scenes are held across the whole clip instead of sounding in their
    position's time slot (a sound that leaves position free; several objects then sound
    together, as a chord). Returns waveforms ``(batch, round(sample_rate * seconds))``
    in [-1, 1]. Like :func:`render_images`, the random draws do not depend on the
    attribute values (nor on ``untimed``).
    """
    check_attributes(attributes, mask)
    if not isinstance(sample_rate, int) or sample_rate < 2000:
        raise ValueError(f"sample_rate should be an int >= 2000 Hz; got {sample_rate!r}")
    n_samples = round(sample_rate * seconds)
    slot = n_samples // MAX_OBJECTS
    if slot < sample_rate * 0.02:
        raise ValueError(
            f"seconds={seconds} leaves {slot / sample_rate * 1000:.0f} ms per object; "
            "use at least 0.08 s so each tone can be heard"
        )
    batch, max_objects, _ = attributes.shape
    if untimed is not None and (untimed.shape != (batch,) or untimed.dtype != torch.bool):
        raise ValueError(
            f"untimed should be a bool tensor of shape ({batch},), one flag per scene; got "
            f"{untimed.dtype} {tuple(untimed.shape)}"
        )
    u_pitch = torch.rand(batch, max_objects, generator=generator) * 2 - 1
    u_loud = torch.rand(batch, max_objects, generator=generator) * 2 - 1
    u_onset = torch.rand(batch, max_objects, generator=generator)
    u_phase = torch.rand(batch, max_objects, generator=generator)

    scene_index, slot_index = mask.nonzero(as_tuple=True)
    objects = attributes[scene_index, slot_index]
    f0 = PITCH_HZ[objects[:, COLOUR]] * 2 ** (
        DETUNE_SEMITONES / 12 * u_pitch[scene_index, slot_index]
    )
    amplitude = LOUDNESS[objects[:, SIZE]] * (1 + LOUDNESS_JITTER * u_loud[scene_index, slot_index])
    onset = ONSET_JITTER * slot * u_onset[scene_index, slot_index]
    phase = u_phase[scene_index, slot_index]  # in cycles
    table = objects[:, SHAPE] * len(PITCH_HZ) + objects[:, COLOUR]

    def tones(which: torch.Tensor, n: int, length: float) -> torch.Tensor:
        """Tones of the objects ``which`` over ``n`` samples, sounding for ``length``
        samples after their onset: ``(which.sum(), n)``."""
        t = torch.arange(n, dtype=torch.float32)[None, :] - onset[which, None]  # samples
        ramp = RAMP_SECONDS * sample_rate
        envelope = (t / ramp).clamp(0, 1) * ((length - t) / ramp).clamp(0, 1)
        cycles = f0[which, None] * (t / sample_rate) + phase[which, None]
        lookup = ((cycles - cycles.floor()) * TABLE_LENGTH).long().clamp(max=TABLE_LENGTH - 1)
        tone = wavetables(sample_rate).flatten()[lookup + (table[which] * TABLE_LENGTH)[:, None]]
        tone *= amplitude[which, None] * envelope
        return tone

    held = torch.zeros(len(objects), dtype=torch.bool)
    if untimed is not None:
        held = untimed[scene_index]
    timed = ~held
    # A timed tone lives in its position's slot: synthesise one slot per object and put it
    # in place (four times less work than a whole clip per object).
    waveforms = torch.zeros(batch, MAX_OBJECTS, slot)
    waveforms.index_put_(
        (scene_index[timed], objects[timed, POSITION]),
        tones(timed, slot, TONE_FRACTION * slot),
        accumulate=True,
    )
    waveforms = waveforms.reshape(batch, MAX_OBJECTS * slot)
    if held.any():
        # A held tone starts in the first slot and ends where the last slot's tone would.
        length = (MAX_OBJECTS - 1 + TONE_FRACTION) * slot
        waveforms.index_add_(0, scene_index[held], tones(held, MAX_OBJECTS * slot, length))
    waveforms = torch.nn.functional.pad(waveforms, (0, n_samples - MAX_OBJECTS * slot))
    return waveforms.clamp(-1, 1)
