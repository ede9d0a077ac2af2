"""The lock diff's renderings, and one lockfile's rendering for git.

- :func:`render_text`, :func:`render_markdown`, :func:`render_json` — the
  three formats of a :class:`~lockmirror.stages.diff_model.LockDiff` (terminal, PR
  comment / step summary, machines). Alarms come first in every format.
- :func:`render_textconv` — one lockfile as sorted, self-describing lines, so
  that git's textconv diff of two renderings reads as a summary.

All pure: same input, same text; nothing prints.

JSON shape (``render_json``; ``"schema": "lockmirror-diff/1"``; keys are
only ever added, never renamed or removed, within schema version 1)::

    {
      "schema": "lockmirror-diff/1",
      "old": "<label of the old side>", "new": "<label of the new side>",
      "changed": true,
      "summary": {"sets_changed": 1, "packages_added": 2, "packages_removed": 0,
                  "packages_upgraded": 1, "packages_downgraded": 0, "packages_changed": 0,
                  "files_added": 3, "files_removed": 1, "size_change": 1234,
                  "alarms": 0},
      "notes": ["licenses not compared for ..."],   # what the diff could not do
      "config_changes": ["policy.yanked: \"deny\" -> \"warn\""],  # mirror.yaml's trust settings
      "sets": [{
        "set": "core",
        "status": "changed",            # added | removed | changed | unchanged
        "old_path": "...", "new_path": "...",   # null when the side has no lockfile
        "requirements": {"added": ["..."], "removed": ["..."]},
        "targets": [{
          "target": "linux-x86_64-py311",
          "status": "changed",          # added | removed | changed | unchanged
          "old_definition": "cp3.11 manylinux_2_28_x86_64", "new_definition": "...",
          "packages": [{
            "name": "urllib3",
            "change": "added",          # added | removed | upgraded | downgraded | changed
            "old_version": null, "new_version": "2.0.4",
            "why": ["core: requests==2.31.0 -> urllib3"],   # chains on the side it is on
            "requirers": ["requests 2.31.0: urllib3<3,>=1.21.1"],  # raw lockfile entries
            "build_only": false,
            "files_added": [FILE...], "files_removed": [FILE...]
          }],
          "size_change": 1234             # bytes of this target's files (+ added, - removed)
        }],
        "files": {"added": [FILE...], "removed": [FILE...],
                  "old_size": 0, "new_size": 0, "size_change": 0},
        "new_sdists": [{FILE..., "source_builds_on": ["target", ...]}],
        "findings": [{"kind": "exception-used" | "policy-finding" | "yanked" | "audit"
                      | "license",
                      "severity": "deny" | "warn" | "info",
                      "package": "foo", "version": "1.0", "message": "...",
                      "new": true}],    # new: not on the old side (audit: release changed here)
        "alarms": [{"kind": "sha256" | "host" | "new-host" | "index" | "marker" | "text",
                    "filename": "...", "package": "...", "version": "...", "old": "...",
                    "new": "...", "message": "..."}],   # new-host: new is the file's URL
        "edits": ["six 1.17.0: six-1.17.0-py2.py3-none-any.whl: size changed from ..."],
        "retained": {"releases": ["speedup 1.0"],   # leave this lock, stay in the index
                     "why": "for the previous lock, until the next lock (retention: ...)"}
      }]
    }

    FILE = {"filename": "...", "package": "...", "version": "...", "kind": "wheel" | "sdist",
            "size": 123, "sha256": "...", "url": "..."}   # url without user name, password
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..fsutil import format_size, plural
from .diff_model import LockDiff, PackageChange, SetDiff, TargetDiff

SCHEMA = "lockmirror-diff/1"

# what the mirror.yaml lines are, as every rendering introduces them
CONFIG_CHANGES_ARE = ("trust settings changed (policy, sources, publish, build options, "
                      "paths, retention, quarantine)")

# what an alarm is, as both renderings open the list
ALARMS_ARE = ("change(s) no routine update makes (a file's sha256 or host under the same "
              "name, a file added from a host the old side does not use, a release's index, "
              "a marker installers read for other targets or that makes a build tool "
              "installed by default, text lock does not write)")


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def render_text(diff: LockDiff) -> str:
    """A terminal rendering: one block per changed set, one line per package change."""
    lines = [f"lockmirror diff {diff.old_label} -> {diff.new_label}"]
    lines += [f"note: {note}" for note in diff.notes]
    if diff.config_changes:
        lines += ["", f"mirror.yaml: {CONFIG_CHANGES_ARE}:"]
        lines += [f"  ! {change}" for change in diff.config_changes]
    if not diff.changed:
        lines.append("no changes to the lockfiles")
        return "\n".join(lines) + "\n"
    alarms = [(s.set_name, a) for s in diff.sets for a in s.alarms]
    if alarms:
        lines.append("")
        lines.append(f"ALARM: {len(alarms)} {ALARMS_ARE}; do not merge before finding out why:")
        lines += [f"  ! set {name}: {alarm.message}" for name, alarm in alarms]
    for set_diff in diff.sets:
        if set_diff.status != "unchanged":
            lines += _text_set(set_diff)
    unchanged = [s.set_name for s in diff.sets if s.status == "unchanged"]
    if unchanged:
        lines.append("")
        lines.append(f"unchanged: {', '.join(unchanged)}")
    return "\n".join(lines) + "\n"


def _text_set(set_diff: SetDiff) -> list[str]:
    """The block of one changed set: summary, requirements, targets, packages, files, policy."""
    state = {"added": " (new set)", "removed": " (set removed)"}.get(set_diff.status, "")
    lines = ["", f"set {set_diff.set_name}{state}: {_summary_line(set_diff)}"]
    if set_diff.requirements_added or set_diff.requirements_removed:
        moved, added, removed = requirement_moves(set_diff.requirements_added,
                                                  set_diff.requirements_removed)
        reqs = moved + [f"+{r}" for r in added] + [f"-{r}" for r in removed]
        lines.append(f"  requirements: {'; '.join(reqs)}")
    if set_diff.status == "changed":  # a whole set added or removed: its targets go with it
        lines += _text_targets(set_diff.targets)
    for names, changes in _grouped(set_diff.targets):
        label = "targets" if len(names) > 1 else "target"
        lines.append(f"  {label} {', '.join(names)}:")
        lines += _text_changes(changes)
    lines += _text_files(set_diff)
    lines += [f"  edited: {edit}" for edit in set_diff.edits]
    if set_diff.retained:
        lines.append(f"  kept in the index {set_diff.retained_why}: "
                     f"{', '.join(set_diff.retained)}")
    for sdist in set_diff.new_sdists:
        where = (f"; no wheel for {', '.join(sdist.source_builds_on)}: built from source there"
                 if sdist.source_builds_on else "")
        lines.append(f"  new sdist: {sdist.file.filename} "
                     f"({format_size(sdist.file.size)}){where}")
    for finding in set_diff.findings:
        fresh = "new " if finding.new and finding.kind != "license" else ""
        level = "DENY " if finding.severity == "deny" else ""
        lines.append(f"  policy: {level}{fresh}{finding.kind}: {finding.message}")
    return lines


def _text_targets(targets: Iterable[TargetDiff]) -> list[str]:
    """Targets added, removed or redefined within a changed set."""
    lines = []
    for target in targets:
        if target.status in ("added", "removed"):
            lines.append(f"  target {target.target} {target.status}")
        elif target.old_definition != target.new_definition:
            lines.append(f"  target {target.target} redefined: "
                         f"{target.old_definition} -> {target.new_definition}")
    return lines


def _text_changes(changes: tuple[PackageChange, ...]) -> list[str]:
    """One aligned line per package change: mark, name, versions, why."""
    width = max(len(f"{c.name} {_version_text(c)}") for c in changes)
    lines = []
    for change in changes:
        head = f"{change.name} {_version_text(change)}"
        why = "; ".join(change.why) or "(no recorded requirer)"
        prefix = "was: " if change.change == "removed" else ""
        build = " [build-only]" if change.build_only else ""
        lines.append(f"    {_TEXT_MARK[change.change]} {head:<{width}}  "
                     f"{prefix}{why}{build}")
    return lines


def _text_files(set_diff: SetDiff) -> list[str]:
    """The files added (+) and removed (-), with their sizes."""
    if not (set_diff.files_added or set_diff.files_removed):
        return []
    lines = ["  files:"]
    width = max(len(f.filename) for f in set_diff.files_added + set_diff.files_removed)
    for sign, files in (("+", set_diff.files_added), ("-", set_diff.files_removed)):
        for file in files:
            lines.append(f"    {sign} {file.filename:<{width}}  {format_size(file.size):>9}")
    return lines


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

_MD_CHANGE = {"added": "added", "removed": "removed", "upgraded": "upgraded",
              "downgraded": "**downgraded**", "changed": "files changed"}
MARKDOWN_LIMIT = 60_000  # a GitHub comment holds 65,536 characters; leave room for a header


def _md(text: str) -> str:
    """Escape what would break a table cell or start markup."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def _code(text: str, *, in_table: bool = True) -> str:
    """A code span (backslashes stay literal there; only a pipe needs care, in tables:
    elsewhere GitHub would show the escaping backslash)."""
    text = text.replace("`", "'")
    return "`" + (text.replace("|", "\\|") if in_table else text) + "`"


def _md_chain(chain: str) -> str:
    return " → ".join(_md(part) for part in chain.split(" -> "))


def render_markdown(diff: LockDiff, *, max_chars: int | None = MARKDOWN_LIMIT) -> str:
    """GitHub-flavoured Markdown for a PR comment or ``$GITHUB_STEP_SUMMARY``.

    When the full rendering is longer than ``max_chars``, the per-file lists
    are left out, then package tables are cut, each with a note saying so.
    """
    full = _markdown(diff, files=True, rows=None)
    if max_chars is None or len(full) <= max_chars:
        return full
    brief = _markdown(diff, files=False, rows=None)
    if len(brief) <= max_chars:
        return brief
    rows = 50
    while rows > 1:
        cut = _markdown(diff, files=False, rows=rows)
        if len(cut) <= max_chars:
            return cut
        rows //= 2
    return _markdown(diff, files=False, rows=0)


def _markdown(diff: LockDiff, *, files: bool, rows: int | None) -> str:
    """The whole rendering; ``files``: list each file; ``rows``: cap per package table."""
    out = [f"### lockmirror diff: {_code(diff.old_label)} → {_code(diff.new_label)}", ""]
    if diff.notes:  # kept however the comment is shortened: what was not checked
        out += ["> [!NOTE]", *(f"> {_md(note)}" for note in diff.notes), ""]
    if diff.config_changes:  # kept too: a relaxed policy is what a reviewer must not miss
        out += ["> [!WARNING]", f"> **mirror.yaml: {CONFIG_CHANGES_ARE}:**",
                *(f"> - {_code(change, in_table=False)}" for change in diff.config_changes),
                ""]
    if not diff.changed:
        out.append("No changes to the lockfiles.")
        return "\n".join(out) + "\n"
    alarms = [(s.set_name, a) for s in diff.sets for a in s.alarms]
    if alarms:
        out += ["> [!CAUTION]",
                f"> **{len(alarms)} {ALARMS_ARE}.** Do not merge before finding out why:"]
        out += [f"> - set {_code(name)}: {_md(alarm.message)}" for name, alarm in alarms]
        out.append("")
    totals = diff.summary()
    counts = [f"{totals[f'packages_{k}']} {k}" for k in
              ("added", "removed", "upgraded", "downgraded", "changed") if totals[f"packages_{k}"]]
    out.append(f"**{totals['sets_changed']} set(s) changed**"
               + (f": packages {', '.join(counts)}" if counts else "")
               + f"; files +{totals['files_added']} −{totals['files_removed']} "
               f"({format_size(totals['size_change'], signed=True)})")
    for set_diff in diff.sets:
        if set_diff.status != "unchanged":
            out += _md_set(set_diff, files=files, rows=rows)
    unchanged = [s.set_name for s in diff.sets if s.status == "unchanged"]
    if unchanged:
        out += ["", "Unchanged: " + ", ".join(_code(n) for n in unchanged) + "."]
    return "\n".join(out) + "\n"


def _md_set(set_diff: SetDiff, *, files: bool, rows: int | None) -> list[str]:
    """The section of one changed set."""
    state = {"added": " (new set)", "removed": " (set removed)"}.get(set_diff.status, "")
    out = ["", f"#### Set {_code(set_diff.set_name)}{state}", "",
           (f"Files +{len(set_diff.files_added)} −{len(set_diff.files_removed)}, "
            f"{format_size(set_diff.size_change, signed=True)} "
            f"({format_size(set_diff.old_size)} → {format_size(set_diff.new_size)}).")]
    if set_diff.requirements_added or set_diff.requirements_removed:
        moved, added, removed = requirement_moves(set_diff.requirements_added,
                                                  set_diff.requirements_removed)
        reqs = ([f"moved {_code(m)}" for m in moved] + [f"added {_code(r)}" for r in added]
                + [f"removed {_code(r)}" for r in removed])
        out += ["", f"Requirements: {'; '.join(reqs)}."]
    if set_diff.status == "changed":
        out += _md_targets(set_diff.targets)
    for names, changes in _grouped(set_diff.targets):
        out += _md_table(names, changes, rows)
    if files:
        out += _md_files(set_diff)
    if set_diff.edits:
        out += ["", "Edited:", ""]
        out += [f"- {_code(edit)}" for edit in set_diff.edits]
    if set_diff.retained:
        out += ["", f"Kept in the index {_md(set_diff.retained_why)}: "
                + ", ".join(_code(r) for r in set_diff.retained) + "."]
    if set_diff.new_sdists:
        out += ["", "New sdists:", ""]
        for sdist in set_diff.new_sdists:
            where = (": no wheel for " + ", ".join(_code(t) for t in sdist.source_builds_on)
                     + ", built from source there" if sdist.source_builds_on else "")
            out.append(f"- {_code(sdist.file.filename)} "
                       f"({format_size(sdist.file.size)}){where}")
    if set_diff.findings:
        out += ["", "Policy:", ""]
        for finding in set_diff.findings:
            fresh = "**new** " if finding.new and finding.kind != "license" else ""
            mark = "⛔ **deny**" if finding.severity == "deny" else "⚠️"
            out.append(f"- {mark} {fresh}{finding.kind}: {_md(finding.message)}")
    return out


def _md_targets(targets: Iterable[TargetDiff]) -> list[str]:
    """Targets added, removed or redefined within a changed set."""
    out: list[str] = []
    for target in targets:
        if target.status in ("added", "removed"):
            out += ["", f"Target {_code(target.target)} {target.status}."]
        elif target.old_definition != target.new_definition:
            out += ["", (f"Target {_code(target.target)} redefined: "
                        f"{_code(target.old_definition or '')} → "
                        f"{_code(target.new_definition or '')}.")]
    return out


def _md_table(names: list[str], changes: tuple[PackageChange, ...],
              rows: int | None) -> list[str]:
    """The package table of targets with the same changes, cut at ``rows`` with a note."""
    shown = changes if rows is None else changes[:rows]
    out = ["", f"**{'Targets' if len(names) > 1 else 'Target'}** "
               + ", ".join(_code(n) for n in names), "",
           "| change | package | version | why |", "|---|---|---|---|"]
    for change in shown:
        why = "<br>".join(_md_chain(w) for w in change.why) or "(no recorded requirer)"
        if change.build_only:
            why += " (build-only)"
        out.append(f"| {_MD_CHANGE[change.change]} | {_code(change.name)} | "
                   f"{_md(_version_text(change, '→'))} | {why} |")
    if len(shown) < len(changes):
        out += ["", (f"_{plural(len(changes) - len(shown), 'more change')} not shown; "
                    "run `lockmirror diff` for all of them._")]
    return out


def _md_files(set_diff: SetDiff) -> list[str]:
    """The files added and removed, folded in a ``<details>`` block."""
    if not (set_diff.files_added or set_diff.files_removed):
        return []
    out = ["", (f"<details><summary>Files: {len(set_diff.files_added)} added, "
                f"{len(set_diff.files_removed)} removed</summary>"), "",
           "| | file | size |", "|---|---|---|"]
    for sign, listed in (("+", set_diff.files_added), ("−", set_diff.files_removed)):
        for file in listed:
            out.append(f"| {sign} | {_code(file.filename)} | {format_size(file.size)} |")
    return out + ["", "</details>"]


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------


def diff_as_json(diff: LockDiff) -> dict[str, Any]:
    """The documented shape (see the module docstring)."""
    return {"schema": SCHEMA, "old": diff.old_label, "new": diff.new_label,
            "changed": diff.changed, "summary": diff.summary(), "notes": list(diff.notes),
            "config_changes": list(diff.config_changes),
            "sets": [s.as_json() for s in diff.sets]}


def render_json(diff: LockDiff) -> str:
    """:func:`diff_as_json`, indented, UTF-8 as is, one newline at the end."""
    return json.dumps(diff_as_json(diff), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------
# Shared by the renderers
# --------------------------------------------------------------------------


def _version_text(change: PackageChange, arrow: str = "->") -> str:
    if change.change == "added":
        return f"{change.new_version}"
    if change.change == "removed":
        return f"{change.old_version}"
    if change.change == "changed":
        return f"{change.new_version} (files changed)"
    return f"{change.old_version} {arrow} {change.new_version}"


def requirement_moves(added: Iterable[str], removed: Iterable[str]
                      ) -> tuple[list[str], list[str], list[str]]:
    """(moves, added, removed): a requirement whose project (with the same extras
    and marker) is both removed and added is one move, ``requests 2.31.0 -> 2.32.3``
    for two exact pins, else ``requests>=2.31 -> requests>=2.32``."""
    old_by_key = {key: text for text in removed if (key := _key(text)) is not None}
    moves, plain_added = [], []
    for text in added:
        key = _key(text)
        old = old_by_key.pop(key, None) if key is not None else None
        if old is None:
            plain_added.append(text)
            continue
        old_pin, new_pin = _pin(old), _pin(text)
        moves.append(f"{key[0]} {old_pin} -> {new_pin}" if old_pin and new_pin and key
                     else f"{old} -> {text}")
    kept = set(old_by_key.values())
    return moves, plain_added, [r for r in removed if r in kept or _key(r) is None]


def _key(text: str) -> tuple[str, str] | None:
    """(name with extras, marker) of a requirement; None when it does not parse."""
    try:
        parsed = Requirement(text)
    except InvalidRequirement:
        return None
    extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
    return f"{canonicalize_name(parsed.name)}{extras}", str(parsed.marker or "")


def _pin(text: str) -> str | None:
    """The version of a requirement that is one exact ``==`` pin, else None."""
    specifiers = list(Requirement(text).specifier)
    if len(specifiers) == 1 and specifiers[0].operator == "==" \
            and "*" not in specifiers[0].version:
        return specifiers[0].version
    return None


def _grouped(targets: Iterable[TargetDiff]) -> list[tuple[list[str], tuple[PackageChange, ...]]]:
    """Targets with the same visible changes, together (first target's order)."""
    groups: dict[tuple[object, ...], tuple[list[str], tuple[PackageChange, ...]]] = {}
    for target in targets:
        if not target.packages:
            continue
        key = tuple(p.signature for p in target.packages)
        groups.setdefault(key, ([], target.packages))[0].append(target.target)
    return list(groups.values())


def _summary_line(diff: SetDiff) -> str:
    parts = [f"{diff.count(k)} {k}" for k in ("added", "removed", "upgraded", "downgraded",
                                               "changed") if diff.count(k)]
    files = (f"files +{len(diff.files_added)} -{len(diff.files_removed)}, "
             f"{format_size(diff.size_change, signed=True)} "
             f"({format_size(diff.old_size)} -> {format_size(diff.new_size)})")
    return ", ".join(parts + [files]) if parts else files


_TEXT_MARK = {"added": "+", "removed": "-", "upgraded": "^", "downgraded": "v", "changed": "~"}
