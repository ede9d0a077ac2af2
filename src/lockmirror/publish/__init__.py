"""The publish stage: bring a destination to hold exactly what a built index holds.

Entry points:

* :func:`publish` - one source tree to one destination (S3 bucket, upload-API
  repository, or local directory); ``dry_run`` only plans.
* :func:`publish_configured` - a destination named in ``mirror.yaml``'s
  ``publish`` section, from the configured ``dist-index/`` (what ``doit
  publish:<name>`` calls).
* :func:`destination_from_text` - an ad-hoc destination (``s3://bucket/prefix``,
  an ``http(s)://`` upload URL, or a directory) for the far side, where there
  is no mirror.yaml.
* :func:`open_source` - a ``dist-index/`` directory as is, or a bundle
  imported (verified) into a temporary directory.
* :func:`publish_each` - several destinations, each tried whatever happened to
  the one before (both front doors' ``publish`` of every destination).

Every destination implements :class:`Publisher`: ``plan`` compares (cheaply:
a listing, a receipt, simple pages) and ``apply`` uploads in the order of
:mod:`lockmirror.publish.tree` so clients never see a link to a missing file.
Errors are :class:`~lockmirror.errors.PublishError` (one line, no secrets),
or IntegrityError when the source tree does not match its manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any, Protocol

from ..config import LoadedConfig
from ..config_schema import Destination, DirectoryDestination, S3Destination, UploadDestination
from ..errors import InputError, LockmirrorError, UnknownNameError
from ..fsutil import PUBLISH_RUN_PREFIX, locked_unless_held, remove_killed_runs
from ..net.s3_client import endpoint_from_environment
from .tree import (
    PHASES,
    Item,
    Plan,
    Progress,
    ProgressEvent,
    PublishResult,
    SourceTree,
    no_progress,
)

if TYPE_CHECKING:
    from ..stages.importer import ImportResult


class Publisher(Protocol):
    """A destination: plan against its current state, then apply the plan."""

    display: str

    def plan(self, tree: SourceTree, *, prune: bool = False) -> Plan:
        """What differs; read-only. Raises PublishError when the destination cannot be read."""
        ...

    def apply(self, tree: SourceTree, plan: Plan, *, prune: bool = False) -> PublishResult:
        """Upload ``plan.upload`` step by step, then delete ``plan.delete``."""
        ...

    def run(self, tree: SourceTree, *, prune: bool = False) -> PublishResult:
        """Plan and apply (a publisher may overlap the two)."""
        ...


def make_publisher(destination: Destination, *, base_dir: Path | None = None,
                   jobs: int | None = None, break_lock: bool = False, lock_wait: float = 0.0,
                   progress: Progress = no_progress,
                   environ: dict[str, str] | None = None) -> Publisher:
    """The publisher for a destination (nothing is contacted yet).

    ``base_dir`` resolves a relative directory destination (mirror.yaml's
    directory). ``environ`` replaces os.environ for upload credentials.
    """
    if isinstance(destination, S3Destination):
        from .s3 import DEFAULT_JOBS, S3Publisher

        return S3Publisher(destination, jobs=jobs or DEFAULT_JOBS, break_lock=break_lock,
                           lock_wait=lock_wait, progress=progress)
    if isinstance(destination, UploadDestination):
        from .upload import DEFAULT_JOBS as UPLOAD_JOBS
        from .upload import UploadPublisher

        return UploadPublisher(destination, jobs=jobs or UPLOAD_JOBS, progress=progress,
                               environ=environ)
    from .directory import DirectoryPublisher

    path = Path(destination.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return DirectoryPublisher(destination, path, lock_wait=lock_wait, progress=progress)


def publish(source: Path, destination: Destination, *, base_dir: Path | None = None,
            dry_run: bool = False, prune: bool = False, break_lock: bool = False,
            lock_wait: float = 0.0, jobs: int | None = None, progress: Progress | None = None,
            environ: dict[str, str] | None = None, store: Any = None,
            drop_sets: Iterable[str] = ()) -> PublishResult:
    """Publish the index tree ``source`` (a ``dist-index/``) to ``destination``.

    ``prune`` deletes what the destination holds beyond the tree (after the
    pages stopped linking it); ``break_lock`` removes a held S3 lock first;
    ``lock_wait`` seconds to wait for a held lock. A re-run with nothing new
    uploads nothing (``result.summary()`` says "0 uploaded, N already
    present").

    Raises LockmirrorError for an unusable source, IntegrityError when a
    file does not match the manifest, PublishError for everything the
    destination refuses (the destination's root pages untouched when files
    failed). Costs: see each publisher's ``plan`` and ``apply``.

    ``store``: the S3 store whose objects are the tree's ``files/`` entries
    (an index built from ``store: s3://...``); an S3 destination takes them
    streamed from the store and hashed (IntegrityError naming the key when its
    bytes are not its sha256; see :class:`~lockmirror.publish.s3.S3Publisher`), other
    destinations are refused (bundle and import the index instead).

    Several jobs may not publish parts of one index to one destination: a
    tree lacking a set whose lockfile copy the destination holds is refused
    (PublishError naming the sets, before anything is written, and again
    under the destination's lock) unless ``drop_sets`` names them
    (:meth:`SourceTree.guard`). So the root pages and manifest come only from
    a publish of the whole index, and ``prune`` deletes only what no page of
    the whole index links.
    """
    tree = SourceTree.open(Path(source), store=store, drop_sets=drop_sets)
    if store is not None and not isinstance(destination, S3Destination) and any(
            tree.in_store(item) for item in tree.artifacts()):
        raise LockmirrorError("the index's files are in the S3 store; only an S3 destination "
                              "can take them from there", where=str(source),
                              hint="publish to S3, or bundle the index and publish the bundle")
    publisher = make_publisher(destination, base_dir=base_dir, jobs=jobs, break_lock=break_lock,
                               lock_wait=lock_wait, progress=progress or no_progress,
                               environ=environ)
    if dry_run:
        plan = publisher.plan(tree, prune=prune)
        return PublishResult(destination=publisher.display, plan=plan, dry_run=True)
    return publisher.run(tree, prune=prune)


def configured_destination(loaded: LoadedConfig, name: str) -> Destination:
    """The destination ``name`` of mirror.yaml's ``publish`` section.

    Raises UnknownNameError naming the defined destinations when it is not there."""
    destinations = loaded.config.publish
    if name not in destinations:
        defined = ", ".join(sorted(destinations)) or "none"
        raise UnknownNameError(f"no publish destination named {name!r} (defined: {defined})",
                              where=str(loaded.path))
    return destinations[name]


def publish_configured(loaded: LoadedConfig, name: str, *, source: Path | None = None,
                       dry_run: bool = False, prune: bool = False, break_lock: bool = False,
                       lock_wait: float = 0.0, jobs: int | None = None,
                       progress: Progress | None = None, drop_sets: Iterable[str] = ()
                       ) -> PublishResult:
    """Publish the configured index (or ``source``) to the destination ``name``.

    This is what ``doit publish:<name>`` runs. Raises as :func:`publish`. An
    index built on the configured S3 store (``source`` too) takes the files it
    lacks from the store."""
    from ..net.s3_store import s3_store_of

    store = s3_store_of(loaded)
    return publish(source or loaded.index_dir, configured_destination(loaded, name),
                   base_dir=loaded.root, dry_run=dry_run, prune=prune, break_lock=break_lock,
                   lock_wait=lock_wait, jobs=jobs, progress=progress, store=store,
                   drop_sets=drop_sets)


def publish_each(names: Sequence[str], publish_one: Callable[[str], object],
                 report: Callable[[LockmirrorError | OSError], object]) -> str | None:
    """Call ``publish_one`` for each of ``names`` in order, whether or not one
    before it failed (one destination down must not keep the others from their
    publish); each failure goes to ``report``. Returns the line naming the failed
    ones, None when none failed; with a single destination its error is raised."""
    failed = []
    for name in names:
        try:
            publish_one(name)
        except (LockmirrorError, OSError) as error:
            if len(names) == 1:
                raise
            report(error)
            failed.append(name)
    if not failed:
        return None
    return (f"publish failed for {len(failed)} of {len(names)} destinations: "
            f"{', '.join(failed)} (the others were published; see the errors above)")


def destination_from_text(text: str, *, endpoint_url: str | None = None,
                          region: str | None = None, profile: str | None = None,
                          simple_url: str | None = None, layout: str = "flat",
                          directory_keys: bool = True, username_env: str | None = None,
                          password_env: str | None = None, keyring: bool = False
                          ) -> Destination:
    """An ad-hoc destination: ``s3://bucket[/prefix]``, an ``http(s)://`` upload URL
    (credentials from TWINE_USERNAME/TWINE_PASSWORD unless variables are named),
    or a directory path. Raises InputError for a malformed S3 URL."""
    if text.startswith("s3://"):
        match = re.fullmatch(r"s3://([^/]+)/?(.*)", text)
        if not match:
            raise InputError(f"{text!r} is not an S3 URL", hint="write s3://BUCKET/PREFIX")
        return S3Destination(kind="s3", bucket=match.group(1), prefix=match.group(2),
                             endpoint_url=endpoint_url or endpoint_from_environment(),
                             region=region, profile=profile, directory_keys=directory_keys)
    if re.match(r"^https?://", text):
        return UploadDestination(kind="upload", url=text, simple_url=simple_url,
                                 username_env=username_env, password_env=password_env,
                                 keyring=keyring)
    if layout not in ("flat", "tree"):
        raise LockmirrorError(f"layout must be flat or tree, not {layout!r}")
    return DirectoryDestination(kind="directory", path=text,
                                layout="tree" if layout == "tree" else "flat")


def open_source(path: Path, *, pubkey: Path | None = None,
                progress: Progress | None = None) -> OpenedSource:
    """A context giving an index directory: ``path`` itself when it is one, or the
    bundle ``path`` imported (every hash checked, its signature with ``pubkey`` as
    ``lockmirror import`` checks it) into a temporary directory removed afterwards.
    Raises LockmirrorError/BundleError for anything else; the bundle's errors are
    the import's (an unsigned bundle, or another key's, is refused with ``pubkey``)."""
    if path.is_dir():
        return OpenedSource(path, None, None, no_progress)
    if not path.exists():
        raise LockmirrorError("no such file or directory", where=str(path),
                              hint="pass a dist-index directory or a bundle .tar")
    return OpenedSource(None, path, pubkey, progress or no_progress)


class OpenedSource(AbstractContextManager[Path]):
    """An index directory (``directory``), or a ``bundle`` imported on entry;
    ``imported`` is then what the import did (its ``signed`` and ``signer`` say
    what was checked of the signature: :func:`~lockmirror.stages.import_plan.signature_note`)."""

    def __init__(self, directory: Path | None, bundle: Path | None, pubkey: Path | None,
                 progress: Progress) -> None:
        self.directory = directory
        self.bundle = bundle
        self.pubkey = pubkey
        self.progress = progress
        self.imported: ImportResult | None = None
        self.held = ExitStack()  # the work directory: held while this publish lives

    def __enter__(self) -> Path:
        if self.directory is not None:
            return self.directory
        assert self.bundle is not None
        from ..stages.importer import import_bundle

        remove_killed_runs(PUBLISH_RUN_PREFIX, lambda line: self.progress(ProgressEvent(line)),
                           "publishes")
        workdir = self.held.enter_context(TemporaryDirectory(
            prefix=f"{PUBLISH_RUN_PREFIX}{os.getpid()}-"))  # pid-named: a killed run's goes later
        self.held.enter_context(locked_unless_held(Path(workdir)))
        into = Path(workdir) / "import" / "dist-index"  # import locks import/, this run workdir
        try:
            self.imported = import_bundle(
                [self.bundle], into, pubkey=self.pubkey,
                progress=lambda message: self.progress(ProgressEvent(message)))
        except BaseException:
            self.held.close()
            raise
        return into

    def __exit__(self, *exc: object) -> None:
        self.held.close()


__all__ = [
    "PHASES",
    "Item",
    "OpenedSource",
    "Plan",
    "Progress",
    "ProgressEvent",
    "PublishResult",
    "Publisher",
    "SourceTree",
    "configured_destination",
    "destination_from_text",
    "make_publisher",
    "open_source",
    "publish",
    "publish_configured",
    "publish_each",
]
