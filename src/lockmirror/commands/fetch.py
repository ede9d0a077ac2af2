"""``lockmirror fetch``: download every locked file into the content-addressed store.

Also home of the two progress renderers the edges hand to the fetch stage
(:func:`console_progress`): a live rich bar on a terminal, plain periodic
lines in CI logs. The doit glue uses the same function.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from .. import pipeline
from ..config import DEFAULT_CONFIG, load_config
from ..formats.store import FetchItem
from ..fsutil import format_size, plural
from ..stages.fetch import FetchProgress, FetchSummary
from ._options import NameList, positive_int

NAME = "fetch"
HELP = ("download every file of every lockfile (and each wheel's PEP 658 metadata) into the "
        "store, verified by sha256; only what is missing, resuming interrupted downloads")

PLAIN_INTERVAL_SECONDS = 10.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help="the mirror's configuration (default: mirror.yaml)")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="only this set's files (repeatable or A,B; default: every set and "
                             "lockmirror's own): one shard of a CI matrix")
    parser.add_argument("--target", dest="targets", action=NameList, metavar="NAME",
                        help="only the files that install on this target (repeatable or A,B)")
    parser.add_argument("--jobs", "-j", type=positive_int, default=8, metavar="N",
                        help="concurrent downloads (default: 8)")
    parser.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                        help="auto: a live bar on a terminal, periodic lines otherwise")
    parser.add_argument("--fsync", action="store_true",
                        help="write each file to disk before naming it in the store, so it "
                             "survives a power loss (slower: waits for the disk)")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    progress = console_progress(sys.stderr, args.progress)
    try:
        summary = pipeline.fetch(loaded, jobs=args.jobs, progress=progress, durable=args.fsync,
                                 sets=args.sets, targets=args.targets)
    finally:
        if isinstance(progress, RichProgress):
            progress.close()  # a failed run must not leave the live display running
    for note in summary.notes:
        print(f"fetch: {note}", file=sys.stderr)
    print(f"fetch: {summary.describe()}")
    print(f"store: {loaded.store_location}")
    return 0


def console_progress(stream: TextIO, mode: str = "auto") -> FetchProgress | None:
    """The progress renderer for ``stream``: ``bar`` (rich), ``plain`` (a line
    every 10 s, bytes arriving or not), ``none``, or ``auto`` (bar on a terminal,
    plain otherwise)."""
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and stream.isatty()):
        return RichProgress(stream)
    return PlainProgress(stream)


class RichProgress:
    """A live bar: files done, bytes, rate, time left."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("fetch {task.fields[files]}"), BarColumn(),
            DownloadColumn(binary_units=True), _speed_column(), TimeRemainingColumn(),
            console=Console(file=stream), transient=False)
        self._task = self._progress.add_task("fetch", total=None, files="")
        self._files = 0
        self._done = 0
        self._live = False

    def begin(self, files: int, total_bytes: int, metadata: int = 0) -> None:
        self._files = files + metadata
        self._progress.update(self._task, total=total_bytes, files=f"0/{self._files}")
        if self._files:  # nothing to fetch: no bar at all
            self._progress.start()
            self._live = True

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._task, nbytes)

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        self._done += 1
        self._progress.update(self._task, files=f"{self._done}/{self._files}")

    def tick(self) -> None:
        pass  # rich redraws the bar (rate, time) on its own

    def end(self, summary: FetchSummary) -> None:
        self.close()

    def close(self) -> None:
        if self._live:
            self._progress.stop()
            self._live = False


class PlainProgress:
    """One line every ``interval`` seconds, for logs that are not a terminal."""

    def __init__(self, stream: TextIO, interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self._stream = stream
        self._interval = interval
        self._files = self._total = self._done = self._bytes = 0
        self._started = self._last = 0.0

    def begin(self, files: int, total_bytes: int, metadata: int = 0) -> None:
        self._files, self._total = files + metadata, total_bytes
        self._started = self._last = time.monotonic()
        if self._files:
            self._line(announce(files, total_bytes, metadata))

    def advance(self, nbytes: int) -> None:
        self._bytes += nbytes
        self._tick()

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        self._done += 1
        self._tick()

    def tick(self) -> None:
        self._tick()  # a line when due, though no byte arrived (a stalled server)

    def end(self, summary: FetchSummary) -> None:
        pass  # the command prints the summary

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        rate = self._bytes / elapsed if elapsed > 0 else 0.0
        left = int((self._total - self._bytes) / rate) if rate > 0 else None
        self._line(f"{self._done}/{self._files} files, {format_size(self._bytes)}/"
                   f"{format_size(self._total)}, {format_size(int(rate))}/s, "
                   + (f"about {left // 60}:{left % 60:02d} left" if left is not None
                      else "waiting for the first bytes"))

    def _line(self, text: str) -> None:
        print(f"fetch: {text}", file=self._stream, flush=True)


def announce(files: int, total_bytes: int, metadata: int) -> str:
    """``4 files to fetch: 2 to download (1.2 MiB), 2 wheel metadata files``: the
    same split as the summary (downloaded + present + read from their wheels)."""
    text = f"{plural(files + metadata, 'file')} to fetch: {files} to download " \
           f"({format_size(total_bytes)})"
    if metadata:
        text += f", {plural(metadata, 'wheel metadata file')} (read from their wheels, " \
                "downloaded where that fails)"
    return text


def _speed_column() -> Any:
    """A rich column of the transfer speed in the one size convention (IEC,
    :func:`format_size`; rich's own speed column counts in kB/MB)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{format_size(int(speed))}/s")

    return SpeedColumn()
