"""One lockfile as lines for git's diff driver (``lockmirror diff --textconv``).

Each line names its package and version, so a changed line reads on its own
in ``git diff`` and ``git log -p``; ``lockmirror setup-git`` installs the driver.
"""

from __future__ import annotations

from ..formats.lockfile import Lockfile
from ..fsutil import format_size
from .diff_compare import describe_target, exception_text, packages_on_target, why_chains


def render_textconv(lockfile: Lockfile, *, text_sha256: str | None = None) -> str:
    """One lockfile as sorted lines that each name their package and version.

    Made for ``git diff`` with ``diff.lockmirror.textconv``: a changed line
    reads on its own (``-requests 2.30.0: wheel ...`` / ``+requests 2.31.0: ...``).
    ``text_sha256``, the sha256 of the file's bytes, ends it: an edit no line
    shows (``default-groups``, a comment) still changes one.
    """
    lines = [f"lockmirror lockfile for set {lockfile.set_name}",
             f"input-hash {lockfile.input_hash}"]
    lines += [f"requirement {r}" for r in lockfile.requirements]
    for target in lockfile.targets:
        lines.append(f"target {target.name}: {describe_target(target)}; {target.marker}")
    for record in lockfile.exceptions_used:
        lines.append(f"exception-used {exception_text(record)}")
    for record in lockfile.policy_findings:
        lines.append(f"policy-finding {record.get('rule')}: {record.get('message')}")
    target_order = [t.name for t in lockfile.targets]
    names = {name for package in lockfile.packages for name in package.targets}
    indexes = {name: packages_on_target(lockfile, name) for name in names}
    for package in sorted(lockfile.packages, key=lambda p: p.key):
        head = f"{package.name} {package.version}:"
        lines.append(f"{head} targets {', '.join(package.targets)}")
        lines.append(f"{head} index {package.index}")
        if package.marker:
            lines.append(f"{head} marker {package.marker}")
        if package.requires_python:
            lines.append(f"{head} requires-python {package.requires_python}")
        if package.build_only:
            lines.append(f"{head} build-only")
        if package.yanked is not None:
            lines.append(f"{head} yanked {package.yanked}".rstrip())
        by_chain: dict[tuple[str, ...], list[str]] = {}
        for name in sorted(package.targets, key=lambda t: (
                target_order.index(t) if t in target_order else len(target_order), t)):
            chains = why_chains(lockfile, package, name, on_target=indexes[name])
            by_chain.setdefault(chains, []).append(name)
        for chains, on in by_chain.items():
            where = "" if len(by_chain) == 1 else f" on {', '.join(on)}"
            for chain in chains:
                lines.append(f"{head} why{where}: {chain}")
        for file in package.files:
            kind = "wheel" if file.is_wheel else "sdist"
            # whole hashes and URLs: a line changes whenever what installers fetch does
            lines.append(f"{head} {kind} {file.filename} {format_size(file.size)} "
                         f"sha256:{file.sha256} from {file.url}")
            if file.metadata_sha256:
                lines.append(f"{head} metadata {file.filename} sha256:{file.metadata_sha256}")
    if text_sha256:
        lines.append(f"text sha256 {text_sha256} (any edit changes it)")
    return "\n".join(lines) + "\n"
