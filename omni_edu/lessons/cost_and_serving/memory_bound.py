"""Is a decode step memory-bound on this machine? Batch scaling against the roofline, per repeat.

A memory-bound decode step reads every weight once whatever the batch, so batch 8 costs
barely more than batch 1; the roofline says how much more (the KV cache and activations
grow, and past the ridge point the arithmetic takes over). Lesson 08 times a stand-in
decoder at batch 1 and batch 8 several times, interleaved, and compares each repeat's
measured ratio with the roofline's.

The roofline's ratio depends on this machine's measured peak and bandwidth, and those
move between measurements (on a 2-core CPU, two runs of lesson 08 measured roofline ratios
of 1.12x and 1.50x for the same decoder). So every repeat calibrates the machine again
beside its own pair of timings, and the rule reads the *excess*: measured ratio over that
repeat's roofline ratio, with a t interval over the repeats on the log scale, and says in
how many of the repeats each threshold was crossed (``k of n``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from omni_edu.stats import t_interval

SUPPORTED_BELOW = 1.25  # excess under which the time follows the weights read
AGAINST_ABOVE = 1.5  # excess over which the time follows the work done
MIN_BANDWIDTH_SHARE = 0.5  # of the measured bandwidth, for "supported"


@dataclass(frozen=True)
class BatchScaling:
    """What the repeats measured, and the rule's verdict on it.

    ``measured``, ``roofline``: per repeat, time of batch 8 over batch 1 as measured and
    as the roofline predicts from that repeat's calibration. ``excess``: their quotient's
    geometric mean over the repeats, with its 95 % interval ``(low, high)``.
    ``bandwidth_share``: the bytes a batch-1 step must move over its median time, as a
    share of the median measured bandwidth.
    """

    measured: tuple[float, ...]
    roofline: tuple[float, ...]
    excess: float
    low: float
    high: float
    bandwidth_share: float
    verdict: str

    @property
    def repeats(self) -> int:
        return len(self.measured)

    @property
    def above(self) -> int:
        """Repeats whose measured ratio exceeds :data:`AGAINST_ABOVE` x their roofline's."""
        return sum(m > AGAINST_ABOVE * r for m, r in zip(self.measured, self.roofline, strict=True))

    @property
    def below(self) -> int:
        """Repeats whose measured ratio stays under :data:`SUPPORTED_BELOW` x their roofline's."""
        return sum(
            m < SUPPORTED_BELOW * r for m, r in zip(self.measured, self.roofline, strict=True)
        )

    def summary(self) -> str:
        """One sentence: the excess with its interval, and k of n per threshold."""
        n = self.repeats
        return (
            f"batch 8 / batch 1 ran at {self.excess:.2f}x [{self.low:.2f}, {self.high:.2f}] "
            f"the roofline's ratio (roofline {min(self.roofline):.2f}x to "
            f"{max(self.roofline):.2f}x over the {n} calibrations); above "
            f"{AGAINST_ABOVE}x it in {self.above} of {n} repeats, below {SUPPORTED_BELOW}x "
            f"in {self.below} of {n}"
        )


def batch_scaling(
    times_1: list[float],
    times_8: list[float],
    roofline_ratios: list[float],
    bytes_batch_1: float,
    bandwidths: list[float],
) -> BatchScaling:
    """Judge memory-boundness from paired repeats.

    ``times_1``, ``times_8``: seconds of one decode step at batch 1 and batch 8, one pair
    per repeat; ``roofline_ratios``: each repeat's predicted batch-8 / batch-1 time, from
    the machine calibrated in that repeat (``bandwidths``: its measured bytes/s);
    ``bytes_batch_1``: bytes the roofline says a batch-1 step moves.

    Rule, fixed before the run: *supported here* if the excess's whole interval lies below
    :data:`SUPPORTED_BELOW` and batch 1 achieves at least :data:`MIN_BANDWIDTH_SHARE` of
    the bandwidth; *evidence against memory-boundness here* if the interval lies above
    :data:`AGAINST_ABOVE`; otherwise *consistent with, not evidence for*. Two repeats at
    least, since one gives no interval.
    """
    lengths = {len(times_1), len(times_8), len(roofline_ratios), len(bandwidths)}
    if len(lengths) != 1:
        raise ValueError(
            "times_1, times_8, roofline_ratios and bandwidths should hold one value per "
            f"repeat; got lengths {len(times_1)}, {len(times_8)}, {len(roofline_ratios)}, "
            f"{len(bandwidths)}."
        )
    if len(times_1) < 2:
        raise ValueError(f"batch_scaling needs at least 2 repeats; got {len(times_1)}.")
    values = np.array([times_1, times_8, roofline_ratios, bandwidths], dtype=float)
    if not np.all(values > 0):
        raise ValueError("times, roofline ratios and bandwidths should all be positive.")
    measured = values[1] / values[0]
    mean_log, low_log, high_log = t_interval(np.log(measured / values[2]))
    share = bytes_batch_1 / float(np.median(values[0])) / float(np.median(values[3]))
    low, high = math.exp(low_log), math.exp(high_log)
    if high < SUPPORTED_BELOW and share >= MIN_BANDWIDTH_SHARE:
        verdict = "supported here: the step is memory-bound on this machine"
    elif low > AGAINST_ABOVE:
        verdict = "evidence against memory-boundness on this machine"
    else:
        verdict = "consistent with, not evidence for"
    return BatchScaling(
        tuple(measured.tolist()),
        tuple(values[2].tolist()),
        math.exp(mean_log),
        low,
        high,
        share,
        verdict,
    )
