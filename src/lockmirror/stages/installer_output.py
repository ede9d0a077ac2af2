"""Reading installer output: which requirement failed, and the line that says why.

Pure text functions over what uv, pip install and pip check print; used by
:mod:`lockmirror.stages.check_install` to name the set, target and requirement of a failure.
"""

from __future__ import annotations

import re


def _release_of_file(location: str) -> str:
    """"name==version" from a distribution file's URL or path, else the file name."""
    from ..formats.quarantine_list import release_of

    filename = location.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    release = release_of(filename)
    return f"{release[0]}=={release[1]}" if release else filename.removesuffix(".metadata")


def _first_line(output: str, pattern: str) -> str | None:
    for line in output.splitlines():
        if re.search(pattern, line):
            return line.strip()
    return None


def explain_uv(output: str) -> tuple[str | None, str]:
    """(requirement, the line that says why) from uv's error output."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    missing_file = re.search(r"(?:failed to open file|Failed to (?:fetch|download|read))"
                             r"[^`]*`([^`]+)`", text, re.IGNORECASE)
    if missing_file:
        location = missing_file.group(1)
        line = _first_line(text, re.escape(location)) or missing_file.group(0)
        if "/" in location or location.endswith((".whl", ".tar.gz", ".zip", ".metadata")):
            return _release_of_file(location), line
        return location, line
    patterns = (
        r"Because (?:there is no version of |there are no versions of )([^\s,]+)",
        r"Because ([^\s,]+) was not found in the package registry",
        r"Because ([^\s,]+) (?:was not found|has no (?:usable )?wheels|is not available)",
        r"and you require ([^\s,]+), we can conclude",
        r"you require ([^\s,]+)",
        r"No solution found when resolving dependencies for split \(([^)]*)\)",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            line = _first_line(text, re.escape(match.group(0))) or match.group(0)
            return match.group(1), _trim(line)
    line = _first_line(text, r"^\s*(error|×|╰─▶|cause)") or _last_line(text)
    return None, _trim(line)


def explain_pip(output: str) -> tuple[str | None, str]:
    """(requirement, the line that says why) from ``pip install`` output."""
    missing = re.search(r"HTTP error \d+ while getting (\S+)", output)
    if missing:
        return _release_of_file(missing.group(1)), _trim(missing.group(0))
    missing = re.search(r"No such file or directory: '([^']+)'", output)
    if missing:
        return _release_of_file(missing.group(1)), _trim(missing.group(0))
    match = re.search(r"No matching distribution found for (.+)", output)
    if match:
        line = _first_line(output, r"Could not find a version that satisfies") or match.group(0)
        return match.group(1).strip(), _trim(line)
    unavailable = re.search(r"no matching distributions available for your environment:\s*\n"
                            r"((?:[ \t]+\S.*\n?)+)", output)
    cause = re.search(r"The conflict is caused by:\s*\n((?:[ \t]+\S.*\n?)+)", output)
    if unavailable:
        names = ", ".join(line.strip() for line in unavailable.group(1).splitlines())
        detail = "no distribution in the index"
        if cause:
            detail += "; " + "; ".join(line.strip() for line in cause.group(1).splitlines())
        return names, _trim(detail)
    if cause:
        return None, _trim("; ".join(line.strip() for line in cause.group(1).splitlines()))
    if "Traceback (most recent call last)" in output:  # pip crashed: the exception says why
        return None, _trim(_last_line(output))
    line = _first_line(output, r"^ERROR:") or _last_line(output)
    return None, _trim(line)


def explain_pip_check(output: str) -> tuple[str | None, str]:
    """(requirement, line) from ``pip check``: a missing or wrong dependency."""
    match = re.search(r"^(\S+ \S+) requires (\S+?),? which is not installed", output, re.MULTILINE)
    if match:
        return match.group(2), _trim(match.group(0))
    match = re.search(r"^(\S+ \S+) has requirement (\S+), but you have (.+)$", output, re.MULTILINE)
    if match:
        return match.group(2), _trim(match.group(0))
    return None, _trim(_last_line(output))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _trim(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
