"""The console's charts, drawn on the server as inline SVG (no JavaScript, no chart library, no CDN).

Series are per business day (PIAOHAO_BUSINESS_TZ) over the last `DAYS` days:
- volume: the amount of trades paid that day (by `paid_at`);
- success rate: of the trades created that day and already decided, the share that succeeded
  (a refunded trade had succeeded);
- notification latency: the mean and slowest time a merchant's notify_url took to answer (the
  dispatcher records every try's duration). Channel call latency is not recorded anywhere yet (only
  the in-process `/metrics` histogram of HTTP requests), so the console cannot chart it;
- open findings: reconciliation findings open at the end of each day.
Each query reads at most `ROWS_MAX` rows; past that the chart says it is partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from html import escape

from markupsafe import Markup
from sqlalchemy import select

from piaohao.db.schema import notification_attempts, trades
from piaohao.db.schema_recon import recon_findings
from piaohao.platform import Platform
from piaohao.web.assets import _money

__all__ = ["DAYS", "Chart", "bar_chart", "console_charts"]

DAYS = 14
ROWS_MAX = 200_000
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


def _bucket(starts: list[datetime], when: datetime | None) -> int | None:
    if when is None or when < starts[0] or when >= starts[-1]:
        return None
    return min(int((when - starts[0]).total_seconds() // 86400), len(starts) - 2)


def console_charts(p: Platform, days: int = DAYS) -> list[Chart]:
    starts = _day_starts(p, days)
    labels = [d.date() for d in starts[:-1]]
    since = starts[0]
    t, a, f = trades.c, notification_attempts.c, recon_findings.c
    with p.db.read() as conn:
        paid = conn.execute(select(t.paid_at, t.amount).where(t.paid_at >= since).limit(ROWS_MAX)).all()
        made = conn.execute(select(t.created_at, t.status).where(t.created_at >= since).limit(ROWS_MAX)).all()
        tries = conn.execute(select(a.started_at, a.duration_ms).where(a.started_at >= since).limit(ROWS_MAX)).all()
        found = conn.execute(select(f.detected_at, f.resolved_at).where(
            (f.resolved_at.is_(None)) | (f.resolved_at >= since)).limit(ROWS_MAX)).all()
    partial = " (partial: more rows than a chart reads)"

    volume = [0] * days
    for when, amount in paid:
        if (i := _bucket(starts, when)) is not None:
            volume[i] += int(amount)
    decided, succeeded = [0] * days, [0] * days
    for when, status in made:
        if (i := _bucket(starts, when)) is not None and status != "pending":
            decided[i] += 1
            succeeded[i] += status in ("succeeded", "refunded")
    rate = [round(100 * s / d) if d else None for s, d in zip(succeeded, decided, strict=True)]
    lat_sum, lat_n, lat_max = [0] * days, [0] * days, [0] * days
    for when, ms in tries:
        if (i := _bucket(starts, when)) is not None:
            lat_sum[i] += int(ms)
            lat_n[i] += 1
            lat_max[i] = max(lat_max[i], int(ms))
    lat_mean = [round(s / n) if n else None for s, n in zip(lat_sum, lat_n, strict=True)]
    open_at = [sum(1 for det, res in found if det < end and (res is None or res >= end)) for end in starts[1:]]
    return [
        Chart("Volume paid per day", bar_chart(labels, volume, fmt=_money),
              partial if len(paid) >= ROWS_MAX else ""),
        Chart("Success rate of decided trades, by day created (%)",
              bar_chart(labels, rate, fmt=lambda v: f"{v}%", top=100),
              partial if len(made) >= ROWS_MAX else "closed and expired trades count as not succeeded"),
        Chart("Merchant notification latency per day (mean ms; slowest in the label)",
              bar_chart(labels, lat_mean, fmt=lambda v: f"{v} ms", extra=[f"max {m} ms" for m in lat_max]),
              "channel call latency is not recorded yet, so it is not charted"
              + (partial if len(tries) >= ROWS_MAX else "")),
        Chart("Open reconciliation findings at the end of each day", bar_chart(labels, open_at, fmt=str),
              partial if len(found) >= ROWS_MAX else ""),
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
