"""One line per figure, and the verdict: an invariant that fails makes the run exit non-zero."""

from __future__ import annotations

import math
from typing import Any


class Report:
    """Prints figures as they are measured and remembers the failed invariants."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.scenario = ""

    def section(self, key: str, title: str) -> None:
        """Start a scenario's block."""
        self.scenario = key
        print(f"\n== {key}. {title}", flush=True)

    def figure(
        self, name: str, value: Any, unit: str = "", *, ok: bool | None = None, note: str = ""
    ) -> None:
        """One figure; ok=False records a failed invariant."""
        if isinstance(value, float):
            value = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        verdict = "" if ok is None else ("  OK" if ok else "  FAIL")
        tail = f"  ({note})" if note else ""
        print(f"{self.scenario}.{name:<40} {value!s:>12} {unit:<8}{verdict}{tail}", flush=True)
        if ok is False:
            self.failures.append(f"{self.scenario}.{name}")

    def timing(self, name: str, values: list[float], note: str = "") -> None:
        """Median in milliseconds, the spread in the note."""
        spread = f"n {len(values)}, p95 {percentile(values, 95) * 1000:.0f} ms, max " + (
            f"{max(values) * 1000:.0f} ms" if values else "-"
        )
        self.figure(
            name,
            f"{percentile(values, 50) * 1000:.0f}",
            "ms p50",
            note=f"{spread}; {note}" if note else spread,
        )

    def check(self, name: str, bad: int, detail: Any = None, unit: str = "") -> None:
        """A count that must be zero."""
        self.figure(name, bad, unit, ok=bad == 0, note=str(detail)[:300] if bad and detail else "")

    def fail(self, name: str, detail: str) -> None:
        """A scenario that could not finish."""
        line = f"{self.scenario}.{name:<40} {'ERROR':>12}           FAIL  ({detail[:500]})"
        print(line, flush=True)
        self.failures.append(f"{self.scenario}.{name}")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(values: list[float]) -> str:
    """p50/p95/p99/max in milliseconds."""
    if not values:
        return "-"
    return (
        f"p50 {percentile(values, 50) * 1000:.0f} ms, p95 {percentile(values, 95) * 1000:.0f} ms, "
        f"p99 {percentile(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"
    )
