"""The navigation bar of the dashboard, in one list: a page added to ``Views`` shows up in the
bar by adding one entry here (``key`` is the ``active`` name the page renders with, and its
path below the mount point; ``badge`` a job status whose count is shown next to the label,
refreshed live with the page)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["NAV", "NavItem"]


class NavItem(NamedTuple):
    key: str
    label: str
    path: str
    badge: str | None = None


NAV: list[NavItem] = [
    NavItem("overview", "Overview", "/"),
    NavItem("activity", "Activity", "/activity"),
    NavItem("queues", "Queues", "/queues", "queued"),
    NavItem("busy", "Busy", "/busy", "in_progress"),
    NavItem("pools", "Pools", "/pools"),
    NavItem("scheduled", "Scheduled", "/scheduled", "scheduled"),
    NavItem("retry", "Retry", "/retry", "retrying"),
    NavItem("dead", "Dead", "/dead", "dead"),
    NavItem("cancelled", "Cancelled", "/cancelled", "cancelled"),
    NavItem("history", "History", "/history"),
    NavItem("schedules", "Schedules", "/schedules"),
    NavItem("workflows", "Workflows", "/workflows"),
    NavItem("redis", "Redis", "/redis"),
]
