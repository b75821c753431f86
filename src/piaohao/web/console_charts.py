"""The console's charts, drawn on the server as inline SVG (no JavaScript, no chart library, no CDN).

Series are per business day (PIAOHAO_BUSINESS_TZ) over the last `DAYS` days:
- volume: the amount of trades paid that day (by `paid_at`);
- success rate: of the trades created that day and already decided, the share that succeeded
  (a refunded trade had succeeded);
- notification latency: the mean and slowest time a merchant's notify_url took to answer (the
  dispatcher records every try's duration). Channel call latency is not recorded anywhere yet (only
  the in-process `/metrics` histogram of HTTP requests), so the console cannot chart it;
- open findings: reconciliation findings open at the end of each day.
The database sums per day (one row per day comes back); only the findings chart reads rows (at
most `FINDINGS_MAX`; past that it says it is partial).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from html import escape

from markupsafe import Markup
from sqlalchemy import Integer, case, cast, func, literal, select

from piaohao.db.metadata import UTCDateTime
from piaohao.db.schema import notification_attempts, trades
from piaohao.db.schema_recon import recon_findings
from piaohao.platform import Platform
from piaohao.web.assets import _money

__all__ = ["DAYS", "Chart", "bar_chart", "console_charts"]

DAYS = 14
FINDINGS_MAX = 100_000  # findings open or resolved within the window: read row by row
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 84, 32, 14


@dataclass
class Chart:
    title: str
    svg: Markup
    note: str = ""


def _day_starts(p: Platform, days: int) -> list[datetime]:
    tz = p.settings.tz
    today = p.clock.now().astimezone(tz).date()
    return [datetime.combine(today - timedelta(days=days - 1 - i), time(), tz) for i in range(days + 1)]


def _day_of(p: Platform, column, since: datetime):
    """SQL: which day (0 = the first) an instant falls in, counted in whole days from `since` (a
    local midnight), so the database groups and sums and the page reads one row per day."""
    start = literal(since, UTCDateTime())
    if p.db.is_sqlite:
        return cast(func.julianday(column) - func.julianday(start), Integer)
    return cast(func.floor(func.extract("epoch", column - start) / 86400), Integer)


def _per_day(p: Platform, conn, column, since: datetime, days: int, *values, where=()) -> dict[int, tuple]:
    day = _day_of(p, column, since).label("day")
    q = select(day, *values).where(column >= since, *where).group_by(day)
    return {int(r[0]): tuple(r[1:]) for r in conn.execute(q) if r[0] is not None and 0 <= int(r[0]) < days}


def console_charts(p: Platform, days: int = DAYS) -> list[Chart]:
    starts = _day_starts(p, days)
    labels = [d.date() for d in starts[:-1]]
    since = starts[0]
    t, a, f = trades.c, notification_attempts.c, recon_findings.c
    succeeded = func.sum(case((t.status.in_(("succeeded", "refunded")), 1), else_=0))
    with p.db.read() as conn:
        paid = _per_day(p, conn, t.paid_at, since, days, func.sum(t.amount))
        made = _per_day(p, conn, t.created_at, since, days, func.count(), succeeded, where=(t.status != "pending",))
        tries = _per_day(p, conn, a.started_at, since, days, func.avg(a.duration_ms), func.max(a.duration_ms))
        found = conn.execute(select(f.detected_at, f.resolved_at).where(
            (f.resolved_at.is_(None)) | (f.resolved_at >= since)).limit(FINDINGS_MAX)).all()

    volume = [int(paid[i][0] or 0) if i in paid else 0 for i in range(days)]
    rate = [round(100 * int(made[i][1]) / int(made[i][0])) if i in made and made[i][0] else None
            for i in range(days)]
    lat_mean = [round(float(tries[i][0])) if i in tries else None for i in range(days)]
    lat_max = [int(tries[i][1]) if i in tries else 0 for i in range(days)]
    open_at = [sum(1 for det, res in found if det < end and (res is None or res >= end)) for end in starts[1:]]
    return [
        Chart("Volume paid per day", bar_chart(labels, volume, fmt=_money)),
        Chart("Success rate of decided trades, by day created (%)",
              bar_chart(labels, rate, fmt=lambda v: f"{v}%", top=100),
              "closed and expired trades count as not succeeded"),
        Chart("Merchant notification latency per day (mean ms; slowest in the label)",
              bar_chart(labels, lat_mean, fmt=lambda v: f"{v} ms", extra=[f"max {m} ms" for m in lat_max]),
              "channel call latency is not recorded yet, so it is not charted"),
        Chart("Open reconciliation findings at the end of each day", bar_chart(labels, open_at, fmt=str),
              " (partial: more findings than a chart reads)" if len(found) >= FINDINGS_MAX else ""),
    ]


def bar_chart(labels: list[date], values: list[int | None], *, fmt, top: int | None = None,
              extra: list[str] | None = None) -> Markup:
    """One bar per day; a day without data (None) has no bar. Every bar has a <title> (hover,
    screen readers) with the day and its value; the axis shows 0 and the top value."""
    known = [v for v in values if v is not None]
    top = top or max(known or [0]) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(1, len(values))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + plot_h}" '
             'stroke="#888" stroke-width="1"/>',
             f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 12}" text-anchor="end" font-size="14" fill="#333">'
             f'{escape(fmt(top))}</text>',
             f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end" font-size="14" fill="#333">'
             f'{escape(fmt(0))}</text>']
    for i, (day, value) in enumerate(zip(labels, values, strict=True)):
        x = PAD_LEFT + i * step
        if i % 2 == 0 or len(values) <= 8:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="13" '
                         f'fill="#333">{day.strftime("%m-%d")}</text>')
        if value is None:
            continue
        h = plot_h * min(value, top) / top
        label = f"{day.isoformat()}: {fmt(value)}" + (f", {extra[i]}" if extra else "")
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{max(h, 0.5):.1f}" fill="#0b5cad"><title>{escape(label)}</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))
