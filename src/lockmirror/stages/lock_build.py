"""The build requirements of a target's sdists, locked beside its runtime resolution.

Behind an air gap ``pip install`` of an sdist fails unless its build
requirements are in the mirror: :func:`with_build_resolutions` resolves them,
each sdist in its own dependency group (:func:`build_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..targets import Target
from .lock_merge import TargetLock

if TYPE_CHECKING:
    from ..resolve.candidates import TargetContext
    from ..resolve.resolver import Resolution

__all__ = ["build_group", "with_build_resolutions"]


def build_group(sdist_name: str) -> str:
    return f"build-{sdist_name}"


def with_build_resolutions(runtime: Resolution, ctx: TargetContext, set_name: str,
                           resolve: Callable[..., Resolution] | None = None) -> TargetLock:
    """Resolve the build requirements of every sdist chosen for the target.

    Behind an air gap ``pip install`` of an sdist fails unless its build
    requirements are in the mirror, so they are locked too: the static
    ``[build-system] requires`` and, where this host can run the backend for
    the target, what the backend's ``get_requires_for_build_wheel`` reports
    (which covers ``setup_requires``). Build environments are isolated, so
    each sdist resolves on its own (its own dependency group), preferring
    versions already locked. ``resolve`` (default resolve_target) resolves each.
    """
    from ..resolve.candidates import TargetContext
    from ..resolve.resolver import resolve_target

    resolve = resolve or resolve_target

    out: list[tuple[str, Resolution]] = []
    askable = _backend_askable(ctx.target)
    unasked: list[str] = []
    pending = [c for c in runtime.candidates.values() if c.is_sdist_only]
    seen: set[tuple[str, Version]] = set()
    while pending:
        candidate = pending.pop(0)
        if (candidate.name, candidate.version) in seen:
            continue
        seen.add((candidate.name, candidate.version))
        requirements = ctx.sdists.build_requirements(candidate.best)
        if askable is None:
            requirements += [r for r in ctx.sdists.backend_requirements(candidate.best)
                             if r not in requirements]
        else:
            unasked.append(f"{candidate.name} {candidate.version}")
        preferred = {**{n: c.version for n, c in runtime.candidates.items()}, **ctx.preferred}
        build_ctx = TargetContext(
            target=ctx.target, client=ctx.client, sdists=ctx.sdists,
            prereleases=ctx.prereleases, prefer_sdists=False, allow_sdists=ctx.allow_sdists,
            preferred=preferred, candidate_filter=ctx.candidate_filter, check_extras=False)
        label = f"{set_name} (to build {candidate.name} {candidate.version})"
        resolution = resolve(requirements, build_ctx, root_label=label)
        group = build_group(candidate.name)
        if any(g == group for g, _ in out):  # one sdist at two versions: one group each
            group = canonicalize_name(f"{group}-{candidate.version}")
        out.append((group, resolution))
        pending.extend(c for c in resolution.candidates.values() if c.is_sdist_only)
    reason = (f"{askable}; not asked for {', '.join(unasked)} (their [build-system] requires "
              "are locked)") if unasked else None
    return TargetLock(runtime, out, reason)


def _backend_askable(target: Target) -> str | None:
    """None when this host can run build backends as the target would;
    else why not. A backend's answer may depend on the Python and the
    platform it runs on, so it is asked only where the target's marker
    holds on this host."""
    import platform
    import sys

    if Marker(target.environment_marker()).evaluate():
        return None
    host = (f"Python {sys.version_info[0]}.{sys.version_info[1]} on {sys.platform} "
            f"{platform.machine()}")
    return (f"build backends run on the lock host ({host}), which is not target "
            f"{target.describe()}, so they could not be asked what they need at build time")
