"""``lockmirror publish``: push a built index (or a bundle) to S3, an upload API or a directory.

    lockmirror publish                       every destination in mirror.yaml (each is
                                             tried; exit 1 when any failed)
    lockmirror publish --to prod-s3          one of them
    lockmirror publish --to s3://bucket/pypi --from lockmirror-<name>-<id>.tar   (no mirror.yaml)
    lockmirror publish --to https://nexus/repository/pypi-internal/ --dry-run
    lockmirror publish --to /srv/pypiserver/packages
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_CONFIG, LoadedConfig
from ..config_schema import Destination
from ..errors import LockmirrorError, error_text
from ..fsutil import format_size
from ..net.s3_store import s3_store_of
from ..publish import (
    Progress,
    ProgressEvent,
    PublishResult,
    configured_destination,
    destination_from_text,
    open_source,
    publish,
    publish_each,
)
from ..redaction import redact_url
from ..stages.import_plan import signature_note
from ..stages.verify import unchecked_manifest
from ._options import NameList, is_project_index, positive_int, project_if_any

if TYPE_CHECKING:
    from ..stages.importer import ImportResult

NAME = "publish"
HELP = "publish the index (or a bundle) to S3, an upload-API repository or a directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", metavar="NAME|URL|DIR", action="append",
                        help="a destination named in mirror.yaml, or s3://BUCKET/PREFIX, an "
                             "http(s) upload URL, or a directory path containing a '/' (e.g. "
                             "./packages) (repeatable; default: every destination in "
                             "mirror.yaml)")
    parser.add_argument("--from", dest="source", metavar="DIR|BUNDLE", type=Path,
                        help="an index directory or a bundle .tar (default: the configured "
                             "dist-index, else ./dist-index)")
    parser.add_argument("--config", default=None, metavar="PATH",
                        help=f"mirror.yaml (default: ./{DEFAULT_CONFIG} when present)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be uploaded and deleted (counts and bytes per "
                             "kind); change nothing")
    parser.add_argument("--prune", action="store_true",
                        help="delete what lockmirror published there that the index no "
                             "longer has (after the pages stopped linking it); other files "
                             "are left and named")
    parser.add_argument("--drop-sets", action=NameList, default=[], metavar="SET[,SET]",
                        help="let this publish remove these sets from the destination (by "
                             "default a publish whose index lacks a set the destination holds "
                             "is refused: several jobs must not publish parts of one index)")
    parser.add_argument("--break-lock", action="store_true",
                        help="remove a publish lock left by a publish that died")
    parser.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long for another publish's lock (default: fail at once)")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help="parallel uploads (default: 10 for S3, 2 for upload APIs)")
    parser.add_argument("--pubkey", type=Path, default=None,
                        help="with a bundle: refuse it unless signed by this public key")
    adhoc = parser.add_argument_group("ad-hoc destinations (without mirror.yaml)")
    adhoc.add_argument("--endpoint-url", help="S3: the endpoint of an S3-compatible server "
                                              "(default: AWS_ENDPOINT_URL or AWS)")
    adhoc.add_argument("--region", help="S3: the bucket's region")
    adhoc.add_argument("--profile", help="S3: the AWS profile")
    adhoc.add_argument("--no-directory-keys", action="store_true",
                       help="S3: do not upload simple/<p>/ directory keys (servers that "
                            "store keys ending in / as folders, e.g. SeaweedFS)")
    adhoc.add_argument("--simple-url", help="upload API: the repository's simple index "
                                            "(default: URL/simple/; devpi: URL/+simple/)")
    adhoc.add_argument("--username-env", help="upload API: variable holding the user name "
                                              "(default TWINE_USERNAME)")
    adhoc.add_argument("--password-env", help="upload API: variable holding the password "
                                              "or token (default TWINE_PASSWORD)")
    adhoc.add_argument("--keyring", action="store_true",
                       help="upload API: take the password from the keyring")
    adhoc.add_argument("--layout", choices=("flat", "tree"), default="flat",
                       help="directory: artifacts only (pypiserver) or the whole index")
    parser.add_argument("-v", "--verbose", action="store_true", help="report every file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")


def _destinations(args: argparse.Namespace, loaded: LoadedConfig | None
                  ) -> list[tuple[str, Destination]]:
    if not args.to:
        if loaded is None:
            raise LockmirrorError("nothing to publish to: no mirror.yaml here",
                                  hint="pass --to s3://BUCKET/PREFIX, an upload URL or a "
                                       "directory, or --config mirror.yaml")
        if not loaded.config.publish:
            raise LockmirrorError("mirror.yaml has no publish destinations",
                                  where=str(loaded.path), hint="add a publish: section or "
                                                               "pass --to")
        return sorted(loaded.config.publish.items())
    chosen = []
    for text in args.to:
        if loaded is not None and text in loaded.config.publish:
            chosen.append((text, configured_destination(loaded, text)))
        elif text.startswith(("s3://", "http://", "https://", "/", ".")) or "/" in text \
                or loaded is None:
            chosen.append((redact_url(text), destination_from_text(  # shown: no password
                text, endpoint_url=args.endpoint_url, region=args.region, profile=args.profile,
                simple_url=args.simple_url, layout=args.layout,
                directory_keys=not args.no_directory_keys, username_env=args.username_env,
                password_env=args.password_env, keyring=args.keyring)))
        else:
            configured_destination(loaded, text)  # raises, naming the defined ones
    return chosen


def _printer(args: argparse.Namespace, name: str) -> Progress:
    def report(event: ProgressEvent) -> None:
        # a note (a lock broken or taken over) is said as it happens, -q or not, and
        # only then (not again from the result's notes)
        if (args.quiet and not event.note) or (event.detail and not args.verbose):
            return
        counter = f" [{event.done}/{event.total}]" if event.detail and event.total else ""
        print(f"publish {name}: {event.message}{counter}", file=sys.stderr, flush=True)

    return report


SHOWN = 10  # names printed without -v; deletions are never silent


def _shown(paths: Sequence[str], verbose: bool) -> tuple[Sequence[str], int]:
    """The names to print and how many more there are."""
    shown = paths if verbose else paths[:SHOWN]
    return shown, len(paths) - len(shown)


def _names(paths: Sequence[str], verbose: bool) -> str:
    """``a, b, c`` (every one with -v, else the first few ``and N more``)."""
    shown, more = _shown(paths, verbose)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _print_plan(name: str, result: PublishResult, verbose: bool = False) -> None:
    plan = result.plan
    print(f"publish {name} ({result.destination}): dry run, nothing changed")
    if plan.locked:
        print(f"  {plan.locked} (a publish now would wait for it or fail)")
    for kind, (count, size) in plan.by_kind().items():
        print(f"  upload {kind}s: {count} ({format_size(size)})")  # kinds are nouns
    print(f"  upload total: {len(plan.upload)} ({format_size(plan.upload_bytes)})")
    print(f"  already present: {len(plan.present)}")
    if plan.delete:
        print(f"  stale, would delete: {len(plan.delete)}")
        shown, more = _shown(plan.delete, verbose)
        for path in shown:
            print(f"    {path}")
        if more:
            print(f"    and {more} more (-v names every one)")
    if len(plan.stale) > len(plan.delete):
        print(f"  stale, would keep (no --prune): {len(plan.stale) - len(plan.delete)}")
    if plan.foreign:
        print(f"  not lockmirror's: left in place: {len(plan.foreign)} "
              f"({_names(plan.foreign, verbose)})")
    for line in plan.conflicts:
        print(f"  CONFLICT: {line}")


def run(args: argparse.Namespace) -> int:
    loaded = project_if_any(args.config)
    destinations = _destinations(args, loaded)
    source = args.source or (loaded.index_dir if loaded is not None else Path("dist-index"))
    # an index built on the configured S3 store (the default one, or a directory given
    # with --from) names files that stay in the store; a bundle carries its own
    store = s3_store_of(loaded) if loaded is not None and source.is_dir() else None
    conflicts = False

    def one(name: str) -> None:
        nonlocal conflicts
        conflicts = _publish_one(args, loaded, tree_dir, name, dict(destinations)[name],
                                 store) or conflicts

    def report(error: LockmirrorError | OSError) -> None:
        print(error_text(error), file=sys.stderr, flush=True)

    opened = open_source(source, pubkey=args.pubkey, progress=_printer(args, str(source)))
    with opened as tree_dir:
        if opened.imported is not None:  # said as import says it, -q or not
            print(f"publish {source}: {_checked(opened.imported)}")
        elif unchecked := unchecked_manifest(  # as verify says it, -q or not
                tree_dir, project_index=is_project_index(source, loaded)):
            print(f"publish {source}: {unchecked}")
        failed = publish_each([name for name, _ in destinations], one, report)
    if failed:
        print(f"lockmirror: error: {failed}", file=sys.stderr)
        return 1
    return 1 if conflicts else 0


def _checked(imported: ImportResult) -> str:
    """What ``publish --from BUNDLE`` checked, in import's words for the signature."""
    return (f"{imported.kind} bundle {imported.content_id} of {imported.name!r}: "
            f"{imported.files} files, every file verified; "
            f"{signature_note(imported.signed, imported.signer)}")


def _publish_one(args: argparse.Namespace, loaded: LoadedConfig | None, tree_dir: Path,
                 name: str, destination: Destination, store: object) -> bool:
    """Publish ``tree_dir`` to one destination and print what happened; True when
    a dry run found conflicts (the real run fails on them)."""
    result = publish(tree_dir, destination, base_dir=loaded.root if loaded else None,
                     dry_run=args.dry_run, prune=args.prune, break_lock=args.break_lock,
                     lock_wait=args.lock_wait, jobs=args.jobs, store=store,
                     progress=_printer(args, name),
                     drop_sets=args.drop_sets)
    if args.dry_run:
        _print_plan(name, result, args.verbose)
        return bool(result.plan.conflicts)
    if result.deleted and not args.quiet:
        print(f"publish {name}: deleted {len(result.deleted)}: "
              f"{_names(result.deleted, args.verbose)}")
    if result.plan.foreign and args.prune and not args.quiet:
        print(f"publish {name}: not lockmirror's: left in place: {len(result.plan.foreign)} "
              f"({_names(result.plan.foreign, args.verbose)})")
    print(f"publish {name} ({result.destination}): {result.summary()}")
    return False
