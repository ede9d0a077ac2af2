"""The audit report as text, Markdown and JSON: pure renderers (the CLI prints)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..fsutil import plural
from .audit import AuditReport, AuditRow


def _detail(row: AuditRow) -> str:
    if row.advisory:
        detail = row.advisory
        if row.aliases:
            detail += f" ({', '.join(row.aliases)})"
        detail += f": fixed in {', '.join(row.fixed_in)}" if row.fixed_in else ": no fix yet"
    else:
        detail = row.message
    if row.exception:
        detail += f" [waived by {row.exception}]"
    return detail


def _count(report: AuditReport, level: str) -> int:
    """How many of the report's rows are at ``level``."""
    return sum(1 for row in report.rows if row.level == level)


def _summary_line(report: AuditReport) -> str:
    waived, quarantined = _count(report, "waived"), _count(report, "quarantined")
    return (f"{plural(report.releases, 'release')} in {plural(len(report.sets), 'set')} "
            f"checked at {report.checked_at:%Y-%m-%d %H:%M} UTC: {len(report.denied)} denied, "
            f"{plural(len(report.warnings), 'warning')}, {waived} waived"
            + (f", {quarantined} quarantined" if quarantined else ""))


def render_text(report: AuditReport) -> str:
    """A fixed-width table for a terminal (no colour: same bytes everywhere)."""
    header = ("LEVEL", "RELEASE", "RULE", "SETS", "DETAIL")
    table = [header] + [(r.level, r.release, r.rule, ",".join(r.sets), _detail(r))
                        for r in report.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    if report.rows:
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
    else:
        lines.append("no findings")
    lines += [f"note: {note}" for note in report.notes]
    if report.sources:  # a snapshot says when it was taken: "checked at" is only the clock
        lines.append("advisory sources: " + ", ".join(report.sources))
    lines.append(_summary_line(report))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: AuditReport) -> str:
    """GitHub-flavoured Markdown: a job summary or a pull-request comment."""
    verdict = "❌ denied findings" if report.denied else "✅ no denied findings"
    lines = [f"## lockmirror audit: {verdict}", "", _summary_line(report) + ".", ""]
    if report.rows:
        lines += ["| Level | Release | Rule | Sets | Detail |", "|---|---|---|---|---|"]
        for row in report.rows:
            detail = _md(_detail(row))
            if row.url:
                detail = f"[{_md(row.advisory)}]({row.url}){detail[len(_md(row.advisory)):]}"
            lines.append(f"| {row.level} | `{row.release}` | {row.rule} | "
                         f"{', '.join(row.sets)} | {detail} |")
        lines.append("")
    if report.notes:
        lines += [f"> {_md(note)}" for note in report.notes] + [""]
    if report.sources:
        lines.append("Advisory sources: " + ", ".join(f"`{s}`" for s in report.sources))
    return "\n".join(lines).rstrip() + "\n"


def render_json(report: AuditReport) -> str:
    """Stable JSON (sorted keys) for other tools."""
    data = {
        "format": "lockmirror-audit/1",
        "checked_at": report.checked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sets": list(report.sets),
        "releases": report.releases,
        "sources": list(report.sources),
        "yanked_checked": report.yanked_checked,
        "notes": list(report.notes),
        "summary": {"deny": len(report.denied), "warn": len(report.warnings),
                    "waived": _count(report, "waived"),
                    "quarantined": _count(report, "quarantined")},
        "findings": [row.to_json() for row in report.rows],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


RENDERERS: dict[str, Callable[[AuditReport], str]] = {
    "text": render_text, "markdown": render_markdown, "json": render_json,
}
