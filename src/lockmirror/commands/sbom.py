"""``lockmirror sbom [--set NAME]``: the CycloneDX 1.6 SBOM of a set or of the whole mirror."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "sbom"
HELP = ("print (or write) the CycloneDX 1.6 JSON SBOM of a set or of the whole mirror, from "
        "the lockfiles and the store's metadata")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="set_name", metavar="NAME",
                        help="one set (default: the whole mirror, every set)")
    parser.add_argument("--format", choices=("cyclonedx-json",), default="cyclonedx-json",
                        help="cyclonedx-json (CycloneDX 1.6; the only format)")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="write every set's <set>.cdx.json and mirror.cdx.json here "
                             "(with --set: that set's <set>.cdx.json only) instead of "
                             "printing one document")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..config import load_config
    from ..formats.sbom import NO_METADATA
    from ..fsutil import atomic_write, check_output_dir, plural
    from ..net.s3_store import is_s3_url
    from ..stages.sbom import MIRROR_DOCUMENT, sbom_name

    if args.output is not None:
        check_output_dir(args.output, "the SBOM output", hint="point -o at a directory")
    loaded = load_config(args.config)
    sets = [args.set_name] if args.set_name else None
    documents = pipeline.sbom(loaded, sets)
    unknown = documents[MIRROR_DOCUMENT].count(NO_METADATA.encode())
    if unknown:
        # an S3 store is read for the PEP 658 files fetch keeps beside wheels only
        remedy = "run `lockmirror fetch` first" + (
            "; an S3 store holds it beside wheels only (for a release without a wheel, run "
            "this with LOCKMIRROR_STORE=<a local store>)" if is_s3_url(loaded.store_location)
            else "")
        print(f"lockmirror: warning: {plural(unknown, 'release')} without core metadata in the "
              f"store ({loaded.store_location}): license, authors and description unknown; "
              f"{remedy}", file=sys.stderr)
    wanted = sbom_name(args.set_name) if args.set_name else MIRROR_DOCUMENT
    if args.output is not None:
        # one set's mirror.cdx.json would hold only its components under the whole mirror's
        # name, and replace a complete one already there
        written = [wanted] if args.set_name else sorted(documents)
        for name in written:
            atomic_write(args.output / name, documents[name], only_if_changed=True)
            print(f"{args.output / name}")
        if args.set_name:
            print(f"lockmirror: wrote set {args.set_name}'s SBOM only; {MIRROR_DOCUMENT} "
                  "(the whole mirror) is written without --set", file=sys.stderr)
        return 0
    sys.stdout.buffer.write(documents[wanted])
    return 0
