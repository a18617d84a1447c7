"""Lesson 08's memory-bound rule: batch scaling against each repeat's own roofline."""

import pytest

from omni_edu.lessons.cost_and_serving.memory_bound import batch_scaling

BYTES = 4e8  # a batch-1 step's bytes by the roofline
BANDWIDTH = 1e10  # bytes/s: the step needs 0.04 s at full bandwidth


def test_a_step_whose_time_follows_the_weights_is_supported() -> None:
    # batch 8 costs 1.1x batch 1, the roofline says 1.05x; 0.05 s is 80 % of the bandwidth.
    result = batch_scaling(
        [0.05, 0.051, 0.049], [0.055, 0.056, 0.054], [1.05] * 3, BYTES, [BANDWIDTH] * 3
    )
    assert result.verdict.startswith("supported here")
    assert result.below == 3 and result.above == 0
    assert 1.0 < result.excess < 1.1


def test_a_step_whose_time_follows_the_work_is_evidence_against() -> None:
    result = batch_scaling(
        [0.05] * 3, [0.10, 0.105, 0.098], [1.1, 1.12, 1.08], BYTES, [BANDWIDTH] * 3
    )
    assert result.verdict.startswith("evidence against")
    assert result.above == 3
    assert "in 3 of 3 repeats" in result.summary()


def test_each_repeat_is_judged_against_its_own_calibration() -> None:
    """The same timings read against drifting rooflines: the two calibrations that predict
    the measured 2x make the repeats they belong to no longer look like excess."""
    drifting = batch_scaling([0.05] * 4, [0.10] * 4, [1.1, 2.0, 1.1, 2.0], BYTES, [BANDWIDTH] * 4)
    assert drifting.above == 2 and drifting.repeats == 4
    assert drifting.verdict == "consistent with, not evidence for"  # the interval is wide
    steady = batch_scaling([0.05] * 4, [0.10] * 4, [1.1] * 4, BYTES, [BANDWIDTH] * 4)
    assert steady.verdict.startswith("evidence against") and steady.above == 4


def test_low_bandwidth_keeps_a_flat_step_from_support() -> None:
    # Flat scaling but only 8 % of the bandwidth: per-call overhead, not memory traffic.
    result = batch_scaling([0.5, 0.52], [0.52, 0.53], [1.05, 1.05], BYTES, [BANDWIDTH] * 2)
    assert result.bandwidth_share == pytest.approx(BYTES / 0.51 / BANDWIDTH)
    assert result.verdict == "consistent with, not evidence for"


@pytest.mark.parametrize(
    "args, message",
    [
        (([0.1], [0.2], [1.1], BYTES, [BANDWIDTH]), "at least 2 repeats"),
        (([0.1, 0.1], [0.2], [1.1, 1.1], BYTES, [BANDWIDTH] * 2), "one value per repeat"),
        (([0.1, 0.0], [0.2, 0.2], [1.1, 1.1], BYTES, [BANDWIDTH] * 2), "positive"),
    ],
)
def test_bad_input_says_what_was_expected(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        batch_scaling(*args)
