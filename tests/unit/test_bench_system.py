"""bench.system judges keeping up over time: a flat lag is bounded, a growing one is not."""

from bench.system import issue_criterion, slope, thirds


def test_a_flat_lag_is_bounded_and_a_growing_lag_is_not():
    minutes = [m / 2 for m in range(0, 121)]  # a batch every 30 s for an hour
    flat = [20 + (3 if i % 7 == 0 else 0) for i in range(len(minutes))]  # noise, no trend
    growing = [20 + 11 * m for m in minutes]  # 11 s more lag every minute
    assert abs(slope(minutes, flat)) < 0.1 and slope(minutes, growing) == 11.0
    assert thirds(minutes, flat)["bounded"] is True
    assert thirds(minutes, growing)["bounded"] is False
    assert issue_criterion(minutes, flat)["last10_within_min5_15"] is True
    assert issue_criterion(minutes, growing)["last10_within_min5_15"] is False


def test_too_short_a_run_gives_no_verdict():
    assert slope([1, 2], [3, 4]) is None
    assert thirds([1, 2, 3], [1, 1, 1])["bounded"] is None
    assert issue_criterion([1, 2, 20], [1, 1, 1])["last10_within_min5_15"] is None
