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


def test_cpu_use_counts_each_process_from_its_first_sample_and_keeps_the_exited(monkeypatch):
    """CPU seconds per part: a process seen at the first sample counts from there, one started later from
    zero, one that exits keeps what it had used; the chain's roles are summed apart and into the chain."""
    from bench import system

    ticks = iter(
        [
            {("chain: Python driver", 1): 10.0, ("chain: JVM", 2): 100.0},
            {("chain: Python driver", 1): 11.0, ("chain: JVM", 2): 115.0, ("chain: Python workers", 3): 4.0},
            {("chain: Python driver", 1): 12.0, ("chain: JVM", 2): 130.0},  # the worker exited
        ]
    )
    monkeypatch.setattr(system, "tree_cpu", lambda pid, role=None: next(ticks))
    cpu = system.CpuUse()
    for now in (0.0, 10.0, 20.0):
        cpu.sample("chain (driver + JVM)", 1, now)
    assert cpu.cores() == {
        "chain (driver + JVM)": round((2 + 30 + 4) / 20, 2),
        "chain: Python driver": 0.1,
        "chain: JVM": 1.5,
        "chain: Python workers": 0.2,
    }
