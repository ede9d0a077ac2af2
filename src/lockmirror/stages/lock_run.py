"""The lock's resolutions run: every (set, target) at once on one client,
``jobs`` at a time, each set handed on as soon as all its targets are
resolved, a failed set kept from stopping the others, Ctrl-C and SIGTERM
dropping what is left (an sdist build under way stopped with its
subprocesses). Used by :func:`lockmirror.stages.lock.resolve_parts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from ..config import LoadedConfig
from ..errors import LockmirrorError
from .lock_build import with_build_resolutions
from .lock_licenses import LicenseGate
from .lock_merge import TargetLock
from .lock_watch import Stopped, Watch, in_context

if TYPE_CHECKING:
    from ..resolve.candidates import TargetContext

__all__ = ["resolve_all"]


def resolve_all(loaded: LoadedConfig, contexts: Mapping[tuple[str, str], TargetContext],
                 gates: Mapping[str, LicenseGate], watch: Watch, jobs: int,
                 failed: dict[str, LockmirrorError],
                 set_done: Callable[[str, dict[str, TargetLock]], None]) -> None:
    """Every (set, target) resolved, with its sdists' build requirements, ``jobs``
    at a time (the network is the cost); errors placed at the set and target.
    Each set is handed to ``set_done`` (set, target -> its resolution) as soon
    as all its targets are resolved, while the others go on. A set's first
    error (``set_done``'s too) goes into ``failed``, and its other targets give
    up; the other sets go on. On Ctrl-C the rest is dropped, not waited for."""
    from ..resolve.resolver import resolve_target

    def run(key: tuple[str, str]) -> TargetLock:
        set_name, target_name = key
        ctx = contexts[key]
        resolve = gates[set_name].resolve if set_name in gates else resolve_target
        watch.started(key)
        try:
            runtime = resolve(loaded.config.sets[set_name].requirements, ctx,
                              root_label=set_name)
            locked = with_build_resolutions(runtime, ctx, set_name, resolve)
        except LockmirrorError as error:
            raise in_context(error, loaded, set_name, target_name) from None
        watch.finished(key)
        return locked

    targets_of = Counter(set_name for set_name, _ in contexts)
    resolved: dict[str, dict[str, TargetLock]] = {}  # set -> target -> its resolution
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = {pool.submit(run, key): key for key in contexts}
    try:
        for future in as_completed(futures):
            set_name, target_name = futures[future]
            locked = _outcome(future, set_name, failed, watch)
            if locked is None:
                continue
            resolved.setdefault(set_name, {})[target_name] = locked
            if len(resolved[set_name]) == targets_of[set_name]:
                try:
                    set_done(set_name, resolved.pop(set_name))
                except LockmirrorError as error:
                    failed.setdefault(set_name, error)
    except BaseException:
        # Ctrl-C: what is queued never starts, and what runs gives up at its next
        # candidate, not waited for: one blocked in a request to a source that stopped
        # answering would hold the stop until its timeouts (the front door ends without
        # it: lockmirror.interrupt.leave); the sets done are kept. An sdist build under
        # way is stopped, not left to run on: its backend or pip is killed (SIGTERM
        # reaches this process alone) and its directories are removed before this returns
        watch.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        for sdists in {id(ctx.sdists): ctx.sdists for ctx in contexts.values()}.values():
            sdists.stop_builds()
        raise
    pool.shutdown()  # every resolution is done: nothing to wait for


def _outcome(future: Future[TargetLock], set_name: str, failed: dict[str, LockmirrorError],
             watch: Watch) -> TargetLock | None:
    """The resolution ``future`` holds; None when its set failed (the first error
    kept in ``failed``, the set's other targets stopped)."""
    try:
        return future.result()
    except LockmirrorError as error:
        failed.setdefault(set_name, error)
        watch.stop(set_name)  # its other targets give up: it fails anyway
        return None
    except Stopped:
        if set_name in failed:
            return None
        raise
