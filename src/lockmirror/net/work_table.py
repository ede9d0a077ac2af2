"""Memoized work shared between threads, where the caller never waits behind a queue.

A :class:`WorkTable` maps keys to futures. :meth:`WorkTable.get` answers from
the table, doing the work on the caller's thread when nobody has started
it; :meth:`WorkTable.prefetch` queues the work on a thread pool. Work
queued but not yet started when a caller asks for it is done by the caller
(the queued task then finds it taken and returns), so an answer the caller
needs now never waits behind prefetches queued before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

_Key = TypeVar("_Key", bound=Hashable)
_Value = TypeVar("_Value")


class WorkTable(Generic[_Key, _Value]):
    """The work for each key done at most once; ``workers`` threads for
    prefetches (started on the first prefetch), named ``name``."""

    def __init__(self, *, workers: int, name: str) -> None:
        self._workers = max(1, workers)
        self._name = name
        self._lock = threading.Lock()
        self._futures: dict[_Key, Future[_Value]] = {}
        self._taken: set[_Key] = set()
        self._executor: ThreadPoolExecutor | None = None

    def get(self, key: _Key, work: Callable[[], _Value]) -> _Value:
        """The value for ``key``: ``work()`` here unless another thread already
        started the work for it (then waited for). Raises what the work raised."""
        future = self._future(key)
        if self._take(key):
            self._run(work, future)
        return future.result()

    def prefetch(self, key: _Key, work: Callable[[], _Value]) -> None:
        """Queue ``key`` unless it is known or queued already; returns at once."""
        with self._lock:
            if key in self._futures:
                return
            future: Future[_Value] = Future()
            self._futures[key] = future
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix=self._name)
            executor = self._executor
        executor.submit(self._queued, key, work, future)

    def keys(self) -> list[_Key]:
        """Every key asked for or queued so far."""
        with self._lock:
            return list(self._futures)

    def close(self, *, wait: bool = True) -> None:
        """Drop queued work and, with ``wait``, wait for the running work to finish."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)

    def _future(self, key: _Key) -> Future[_Value]:
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._futures[key] = Future()
            return future

    def _take(self, key: _Key) -> bool:
        """Whether the caller is the one to compute ``key`` (first come)."""
        with self._lock:
            if key in self._taken:
                return False
            self._taken.add(key)
            return True

    def _queued(self, key: _Key, work: Callable[[], _Value], future: Future[_Value]) -> None:
        if self._take(key):
            self._run(work, future)

    @staticmethod
    def _run(work: Callable[[], _Value], future: Future[_Value]) -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(error)
