"""The monthly report as one self-contained, printable HTML page with inline SVG charts.

Nothing is fetched: no script, no font, no stylesheet from elsewhere, so the page can be
mailed, archived and printed as it is. Its figures are the report's own (``monthly.py``).
"""

from __future__ import annotations

from html import escape
from typing import Any

from services.figures.monthly import ATTENDANCE_BINS_MINUTES, BANDS

BAND_LABELS = {"under_10s": "under 10 s", "from_10s_to_60s": "10 s to under 60 s",
               "60s_and_over": "60 s and over"}
BAND_COLOURS = {"under_10s": "#2e7d32", "from_10s_to_60s": "#f9a825", "60s_and_over": "#c62828"}
CLOCK_COLOURS = {"from_call": "#1565c0", "from_dispatch": "#8e24aa"}

_STYLE = """
body { font: 11pt/1.4 system-ui, sans-serif; color: #111; margin: 2em auto; max-width: 60em; }
h1 { font-size: 1.6em; margin-bottom: 0; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.sub { color: #555; margin-top: .2em; }
table { border-collapse: collapse; width: 100%; margin: .6em 0; page-break-inside: avoid; }
th, td { border-bottom: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #333; }
figure { margin: 1em 0; page-break-inside: avoid; } figcaption { color: #555; font-size: .9em; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em;
  vertical-align: middle; }
.note { color: #555; font-size: .9em; }
@page { size: A4 landscape; margin: 12mm; }
@media print { body { margin: 0; max-width: none; } }
"""


def _num(value: Any, places: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{places}f}"
    return f"{value:,}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _legend(items: dict[str, str], labels: dict[str, str]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{colour}"></i>{escape(labels[key])}</span>'
        for key, colour in items.items()) + "</p>"


def bands_chart(days: list[dict[str, Any]], line: str) -> str:
    """Stacked bars of answered calls per day, by answer band."""
    rows = [d for d in days if d["line"] == line]
    if not rows:
        return ""
    width, height, left, bottom = 720, 220, 40, 30
    top = max((sum(d[b] for b in BANDS) for d in rows), default=0) or 1
    step = (width - left) / len(rows)
    bar = max(step * 0.8, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="answered calls per day on line '
             f'{escape(line)} by answer band">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
             'stroke="#333"/>',
             f'<text x="{left - 4}" y="12" font-size="10" text-anchor="end">{top}</text>',
             f'<text x="{left - 4}" y="{height - bottom}" font-size="10" '
             'text-anchor="end">0</text>']
    scale = (height - bottom - 10) / top
    for index, day in enumerate(rows):
        x = left + index * step + (step - bar) / 2
        y = height - bottom
        for band in BANDS:
            h = day[band] * scale
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{BAND_COLOURS[band]}"><title>{escape(day["date"])}: '
                             f'{day[band]} {BAND_LABELS[band]}</title></rect>')
        if len(rows) <= 31:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 12}" font-size="9" '
                         f'text-anchor="middle">{escape(day["date"][8:10])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def distribution_chart(grade: dict[str, Any]) -> str:
    """Bars of arrived incidents per attendance-time bin, from the call and from dispatch."""
    call, dispatch = grade.get("from_call_distribution"), grade.get("from_dispatch_distribution")
    if call is None or dispatch is None:
        return ""
    bins = ATTENDANCE_BINS_MINUTES
    labels = [f"{low}–{high}" for low, high in zip(bins, bins[1:], strict=False)] + [
        f"{bins[-1]}+"]
    width, height, left, bottom = 720, 200, 40, 30
    top = max(call + dispatch) or 1
    step = (width - left) / len(bins)
    bar = step * 0.38
    scale = (height - bottom - 10) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="100%" role="img" aria-label="attendance times of {escape(grade["grade"])} '
             'incidents">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
             'stroke="#333"/>',
             f'<text x="{left - 4}" y="12" font-size="10" text-anchor="end">{top}</text>']
    for index, label in enumerate(labels):
        x = left + index * step + step * 0.1
        for offset, (clock, counts) in enumerate((("from_call", call),
                                                  ("from_dispatch", dispatch))):
            h = counts[index] * scale
            parts.append(f'<rect x="{x + offset * bar:.1f}" y="{height - bottom - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{CLOCK_COLOURS[clock]}">'
                         f'<title>{label} min {clock.replace("_", " ")}: {counts[index]}'
                         '</title></rect>')
        parts.append(f'<text x="{x + bar:.1f}" y="{height - bottom + 12}" font-size="9" '
                     f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(report: dict[str, Any]) -> str:
    """The whole page."""
    room, month = escape(report["room"]), escape(report["month"])
    c = report["completeness"]
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{room}: monthly report {month}</title>", f"<style>{_STYLE}</style>",
           "</head><body>",
           f"<h1>{room}: monthly report, {month}</h1>",
           f'<p class="sub">{escape(report["start"])} to {escape(report["end"])} '
           f'({escape(report["timezone"])} calendar month) · definitions version '
           f'{report["definitions_version"]} · '
           f'{c["interval_records_final"]} of {c["interval_records"]} interval records final, '
           f'{c["attendance_records_final"]} of {c["attendance_records"]} attendance records '
           f'final · {c["hours_with_no_events"]} of {c["hours"]} hours with no events</p>']
    out.append("<h2>Calls per line</h2><table><thead><tr><th>line</th><th>offered</th>"
               "<th>answered</th><th>under 10 s</th><th>10 s to under 60 s</th>"
               "<th>60 s and over</th><th>mean answer</th><th>abandoned</th>"
               "<th>abandonment</th><th>service level</th><th>target</th>"
               "<th>repeat contacts</th><th>failure demand</th></tr></thead><tbody>")
    if not report["lines"]:
        out.append('<tr><td colspan="13">No call records this month.</td></tr>')
    for line in report["lines"]:
        bands, shares = line["answer_bands"], line["answer_band_shares"]
        threshold = line["threshold_seconds"]
        out.append(
            f"<tr><td>{escape(line['line'])}</td><td>{_num(line['offered'])}</td>"
            f"<td>{_num(line['answered'])}</td>"
            + "".join(f"<td>{_num(bands[b])} ({_pct(shares[b])})</td>" for b in BANDS)
            + f"<td>{_num(line['mean_answer_seconds'], 1)} s</td>"
            f"<td>{_num(line['abandoned'])}</td><td>{_pct(line['abandonment_rate'])}</td>"
            f"<td>{_pct(line['service_level']['answered'])}"
            f"{'' if threshold is None else f' in {threshold:g} s'}</td>"
            f"<td>{_pct(line['service_level_target'])}</td>"
            f"<td>{_num(line['repeat_contacts'])}</td>"
            f"<td>{_num(line['failure_demand'])} ({_pct(line['failure_demand_rate'])})</td></tr>")
    out.append("</tbody></table>")
    out.append('<p class="note">Shares of answered calls, as the Home Office publishes 999 '
               "data; abandonment excludes abandons under the short-abandon cutoff; service "
               "level is answered within the line's threshold over answered.</p>")
    for line in report["lines"]:
        chart = bands_chart(report["days"], line["line"])
        if chart:
            out.append(f"<figure>{chart}<figcaption>Line {escape(line['line'])}: answered "
                       "calls per day by answer band.</figcaption>"
                       f"{_legend(BAND_COLOURS, BAND_LABELS)}</figure>")
    out.append("<h2>Attendance per grade</h2><table><thead><tr><th>grade</th>"
               "<th>incidents</th><th>attended</th><th>within target from call</th>"
               "<th>within target from dispatch</th><th>mean from call</th>"
               "<th>p90 from call</th><th>mean from dispatch</th><th>p90 from dispatch</th>"
               "</tr></thead><tbody>")
    for grade in report["grades"]:
        out.append(
            f"<tr><td>{escape(grade['grade'])}</td><td>{_num(grade['incidents'])}</td>"
            f"<td>{_num(grade['attended'])}</td>"
            f"<td>{_num(grade['within_target_from_call'])} "
            f"({_pct(grade['within_target_from_call_share'])})</td>"
            f"<td>{_num(grade['within_target_from_dispatch'])} "
            f"({_pct(grade['within_target_from_dispatch_share'])})</td>"
            f"<td>{_minutes(grade['attend_from_call_mean_seconds'])}</td>"
            f"<td>{_minutes(grade['attend_from_call_p90_seconds'])}</td>"
            f"<td>{_minutes(grade['attend_from_dispatch_mean_seconds'])}</td>"
            f"<td>{_minutes(grade['attend_from_dispatch_p90_seconds'])}</td></tr>")
    out.append("</tbody></table>")
    out.append('<p class="note">Times in minutes:seconds. From the call: arrival minus the '
               "linked call's offer (or the incident's creation); from dispatch: arrival minus "
               "the first dispatch. Targets: immediate 15 min urban / 20 min rural, priority "
               "60 min, scheduled 48 h; p90 is the nearest-rank 90th percentile.</p>")
    clock_labels = {"from_call": "from the call", "from_dispatch": "from dispatch"}
    for grade in report["grades"]:
        chart = distribution_chart(grade)
        if chart:
            out.append(f"<figure>{chart}<figcaption>{escape(grade['grade'])}: arrived "
                       "incidents by attendance time (minutes).</figcaption>"
                       f"{_legend(CLOCK_COLOURS, clock_labels)}</figure>")
    out.append("<h2>Completeness</h2><table><tbody>")
    for name, value in c.items():
        if name != "spans_with_no_events":
            out.append(f"<tr><td>{escape(name.replace('_', ' '))}</td>"
                       f"<td>{escape(str(value))}</td></tr>")
    out.append("</tbody></table>")
    spans = c["spans_with_no_events"]
    if spans:
        shown = ", ".join(f"{escape(s['start'])} – {escape(s['end'])}" for s in spans[:40])
        more = f" and {len(spans) - 40} more" if len(spans) > 40 else ""
        out.append(f'<p class="note">Hours with no events (UTC): {shown}{more}.</p>')
    out.append("</body></html>")
    return "\n".join(out)
