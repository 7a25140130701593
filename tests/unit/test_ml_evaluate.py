"""The judge across eras (ml/evaluate.py): each capture is held out once, and online calibration moves the
model toward the held-out capture's own yes rate."""

from __future__ import annotations

from ml.evaluate import leave_one_capture_out, report
from tests.helpers import CAPTURES

LINES = 700  # of each capture: enough RSVPs for five blocks of calibration, little enough for seconds of training


def test_each_capture_is_held_out_once_and_calibration_follows_its_yes_rate(spark, tmp_path):
    eras = {}
    for year in ("2015", "2021"):
        source = next(p for p in CAPTURES if p.name.startswith(year))
        eras[year] = tmp_path / source.name
        eras[year].write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[:LINES]))
    results = leave_one_capture_out(spark, sorted(eras.values()), classifier="logistic_regression")
    by_year = {r["held_out"][:4]: r for r in results}
    assert set(by_year) == {"2015", "2021"}
    for year, result in by_year.items():
        assert result["trained_on"] == [p.name for y, p in eras.items() if y != year]
        assert result["test_rsvps"] > 4 * 100 and result["judged"]
    # trained on 2021 (87 % yes), 2015 (72 %) says no more often: every shift lowers p(yes); and the reverse
    shifts = {year: [s["shift"] for s in r["calibration"]["shifts"]] for year, r in by_year.items()}
    assert len(shifts["2015"]) >= 4 and all(s < 0 for s in shifts["2015"])
    assert len(shifts["2021"]) >= 4 and all(s > 0 for s in shifts["2021"])
    for result in results:
        scores = result["scores"]
        assert scores["model, calibrated online"]["log_loss"] < scores["model, raw"]["log_loss"]
        assert scores["capture's own yes rate"]["roc_auc"] == 0.5
    text = report(results)
    assert "model, calibrated online" in text and "2015-03-08_capture.jsonl" in text
