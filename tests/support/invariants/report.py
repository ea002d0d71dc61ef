"""What the invariant checker reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InvariantViolations", "Report", "Violation"]


@dataclass(frozen=True)
class Violation:
    check: str  # places, running, unique, fields, keys, drained, double-run, cap, lost
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


@dataclass
class Report:
    namespace: str
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self) -> dict[str, int]:
        return dict(Counter(v.check for v in self.violations))

    def describe(self, limit: int = 25) -> str:
        """The violations, at most ``limit`` per check."""
        lines = [f"{len(self.violations)} invariant violations in namespace {self.namespace!r}:"]
        shown: Counter[str] = Counter()
        for v in self.violations:
            shown[v.check] += 1
            if shown[v.check] <= limit:
                lines.append(f"  {v}")
        for check, n in shown.items():
            if n > limit:
                lines.append(f"  [{check}] ... and {n - limit} more")
        return "\n".join(lines)


class InvariantViolations(AssertionError):
    def __init__(self, report: Report, context: str = "") -> None:
        self.report = report
        super().__init__((context + "\n" if context else "") + report.describe())
