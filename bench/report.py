"""Gather every benchmark's results into bench/results/summary.md and a plot, bench/results/summary.png.

    .venv/bin/python -m bench.report          # make bench runs it last

Reads whatever bench/results/*.json exist (a benchmark not run yet is left out) and draws:
- backlog catch-up: seconds per stage against the number of RSVPs (how time grows with volume);
- freshness p50 / p95 / p99 per stage at each steady rate;
- resident memory per part of the running system;
- the app's refresh time against the data size.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.common import RESULTS


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    backlog, system, app, ingest, ml = (load(n) for n in ("backlog", "system", "app", "ingest", "ml"))
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (volume, fresh), (memory, refresh) = axes

    if backlog:
        rows = sorted(backlog["results"], key=lambda r: r["rsvps"])
        sizes = [r["rsvps"] for r in rows]
        for key, label in (("bronze_s", "bronze"), ("silver_s", "silver + PostgreSQL"), ("gold_s", "gold")):
            volume.plot(sizes, [r[key] for r in rows], marker="o", label=label)
        volume.plot(sizes, [r["rsvps"] / r["spark_from_json_per_s"] for r in rows], "k--", marker=".",
                    label="Spark from_json alone (reference)")  # fmt: skip
        volume.set(xscale="log", yscale="log", xlabel="RSVPs in the backlog", ylabel="seconds to catch up",
                   title="Backlog catch-up against volume")  # fmt: skip
        volume.legend()
    else:
        volume.set_title("backlog: not run (make bench-backlog)")

    if system:
        results = system["results"]
        labels, p50, p95, p99 = [], [], [], []
        for r in results:
            for stage in ("silver", "postgres", "gold"):
                s = r[stage]
                labels.append(f"{r['rate_per_s']:g}/s\n{stage}")
                p50.append(s["p50_s"] or 0)
                p95.append(s["p95_s"] or 0)
                p99.append(s["p99_s"] or 0)
        x = range(len(labels))
        fresh.bar([i - 0.27 for i in x], p50, width=0.27, label="p50")
        fresh.bar(list(x), p95, width=0.27, label="p95 (upper est.)")
        fresh.bar([i + 0.27 for i in x], p99, width=0.27, label="p99 (upper est.)")
        fresh.axhline(system.get("target_p95_s", 10), color="red", linestyle=":", label="p95 target")
        fresh.set_xticks(list(x), labels, fontsize=7)
        fresh.set(ylabel="seconds, Kafka append -> visible", title="Freshness at steady rates")
        fresh.legend()

        parts = list(results[0]["memory_mb"])
        width = 0.8 / len(results)
        for k, r in enumerate(results):
            memory.barh([i + k * width for i in range(len(parts))],
                        [r["memory_mb"].get(p, {}).get("median", 0) for p in parts], height=width,
                        label=f"{r['rate_per_s']:g} RSVPs/s")  # fmt: skip
        memory.set_yticks([i + 0.4 - width / 2 for i in range(len(parts))], parts)
        memory.set(xlabel="resident MB (median)", title="Memory per part of the running system")
        memory.legend()
    else:
        fresh.set_title("freshness: not run (make bench-system)")
        memory.set_title("memory: not run (make bench-system)")

    if app:
        rows = app["results"]
        for page in rows[0]["pages"]:
            refresh.plot([r["rsvps"] for r in rows], [r["pages"][page]["refresh_s"] for r in rows], marker="o",
                         label=page)  # fmt: skip
        refresh.set(xscale="log", xlabel="RSVPs behind the tables", ylabel="seconds per refresh (server)",
                    title="App refresh against data size")  # fmt: skip
        refresh.legend()
    else:
        refresh.set_title("app: not run (make bench-app)")

    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "summary.png", dpi=110)

    sections = ["# Benchmarks", "", "![summary](summary.png)", ""]
    for name, title in (("ingest", "Ingest"), ("backlog", "Backlog catch-up"), ("system", "Running system"),
                        ("ml", "Model"), ("app", "App"), ("cluster", "Cluster beside local mode")):  # fmt: skip
        md = RESULTS / f"{name}.md"
        sections += [f"## {title}", "", md.read_text() if md.exists() else f"not run (make bench-{name})", ""]
    (RESULTS / "summary.md").write_text("\n".join(sections))
    print(f"bench: {RESULTS / 'summary.md'} and {RESULTS / 'summary.png'}", file=sys.stderr)
    del ingest, ml  # their tables go into summary.md as they are
    return 0


if __name__ == "__main__":
    sys.exit(main())
