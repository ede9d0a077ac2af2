"""``lockmirror sbom [--set NAME]``: the CycloneDX 1.6 SBOM of sets or of the whole mirror."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import NameList

NAME = "sbom"
HELP = ("print (or write) the CycloneDX 1.6 JSON SBOM of a set or of the whole mirror, from "
        "the lockfiles and the store's metadata")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="a set, or several (a,b or repeated) with -o; default: the "
                             "whole mirror, every set")
    parser.add_argument("--format", choices=("cyclonedx-json",), default="cyclonedx-json",
                        help="cyclonedx-json (CycloneDX 1.6; the only format)")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="write every set's <set>.cdx.json and mirror.cdx.json here "
                             "(with --set: those sets' <set>.cdx.json only) instead of "
                             "printing one document")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..config import load_config
    from ..errors import InputError
    from ..formats.sbom import NO_METADATA
    from ..fsutil import atomic_write, check_output_dir, plural
    from ..net.s3_store import is_s3_url
    from ..stages.sbom import MIRROR_DOCUMENT, sbom_name

    if args.output is not None:
        check_output_dir(args.output, "the SBOM output", hint="point -o at a directory")
    loaded = load_config(args.config)
    sets = list(dict.fromkeys(args.sets)) if args.sets else None  # `--set a,a`: a once
    loaded.chosen_sets(sets)  # an unknown name is said first
    if args.output is None and sets is not None and len(sets) > 1:
        raise InputError(f"{len(sets)} sets' SBOMs to print ({', '.join(sets)})", where="--set",
                         hint="choose one with --set, or give -o DIR to write each")
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
    if args.output is not None:
        # the chosen sets' mirror.cdx.json would hold only their components under the whole
        # mirror's name, and replace a complete one already there
        written = [sbom_name(name) for name in sets] if sets else sorted(documents)
        for name in written:
            atomic_write(args.output / name, documents[name], only_if_changed=True)
            print(f"{args.output / name}")
        if sets:
            print(f"lockmirror: wrote the SBOM of {'set' if len(sets) == 1 else 'sets'} "
                  f"{', '.join(sets)} only; {MIRROR_DOCUMENT} (the whole mirror) is written "
                  "without --set", file=sys.stderr)
        return 0
    sys.stdout.buffer.write(documents[sbom_name(sets[0]) if sets else MIRROR_DOCUMENT])
    return 0
