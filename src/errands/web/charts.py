"""Charts drawn on the server as plain data for inline SVG in the templates (no script, no
CDN): stacked bars of the attempts per bucket, and per job name a line of the average wait."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..store.metrics import Bucket

__all__ = ["SPANS", "activity_chart", "wait_lines"]

WIDTH, HEIGHT = 600, 120
SPANS = {"hour": ("%H:%M", "minute"), "day": ("%a %H:00", "hour"), "week": ("%a %d %H:00", "hour")}


def _label(epoch: float, fmt: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(fmt)


def activity_chart(buckets: list[Bucket], span: str) -> dict[str, Any]:
    """Bars: done (bottom) and failed + dead (on top), in viewBox units."""
    fmt, unit = SPANS[span]
    top = max([b.done + b.failed + b.dead for b in buckets] + [1])
    step = WIDTH / max(1, len(buckets))
    scale = (HEIGHT - 4) / top
    bars = []
    for i, b in enumerate(buckets):
        ok, bad = round(b.done * scale, 1), round((b.failed + b.dead) * scale, 1)
        title = f"{_label(b.start, fmt)} UTC: {b.done} done, {b.failed} failed, {b.dead} dead"
        bars.append({"x": round(i * step, 1), "w": round(max(step - 1, 0.5), 1), "ok": ok,
                     "bad": bad, "title": title})  # fmt: skip
    return {
        "bars": bars, "top": top, "width": WIDTH, "height": HEIGHT, "unit": unit,
        "first": _label(buckets[0].start, fmt) if buckets else "",
        "done": sum(b.done for b in buckets), "failed": sum(b.failed for b in buckets),
        "dead": sum(b.dead for b in buckets),
    }  # fmt: skip


def wait_lines(buckets: list[Bucket], span: str) -> list[dict[str, Any]]:
    """Per job name: average wait (seconds) over the span, the worst bucket, and the points
    of a line of the average wait per bucket (buckets without starts are left out)."""
    fmt, _unit = SPANS[span]
    names = sorted({n for b in buckets for n in b.waits})
    pad = 16  # keeps the line and its dots inside the box
    step = (WIDTH - 2 * pad) / max(1, len(buckets) - 1)
    out = []
    for name in names:
        per = [(i, b.waits[name][0] / b.waits[name][1] / 1000)
               for i, b in enumerate(buckets) if b.waits.get(name, (0, 0))[1]]  # fmt: skip
        total_ms = sum(b.waits.get(name, (0, 0))[0] for b in buckets)
        started = sum(b.waits.get(name, (0, 0))[1] for b in buckets)
        worst_i, worst = max(per, key=lambda p: p[1])
        top = max(worst, 0.001)
        points = " ".join(
            f"{round(pad + i * step, 1)},{round(HEIGHT - pad - w / top * (HEIGHT - 2 * pad), 1)}"
            for i, w in per
        )
        out.append({
            "name": name, "started": started, "mean": total_ms / started / 1000,
            "worst": worst, "worst_at": _label(buckets[worst_i].start, fmt),
            "points": points, "single": len(per) == 1, "width": WIDTH, "height": HEIGHT,
        })  # fmt: skip
    return out
