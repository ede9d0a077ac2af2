"""``lockmirror lockfile --base-url URL [DIR]``: a set's lockfile for a mirror served at URL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import NameList

NAME = "lockfile"
HELP = ("write the mirror's lockfiles with every file as a URL under --base-url (for uv over "
        "HTTP, or a lockfile copied away from the mirror)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path, default=Path("dist-index"),
                        help="the index tree or an imported mirror (default: dist-index)")
    parser.add_argument("--base-url", required=True, metavar="URL",
                        help="where the mirror's root (the directory holding files/ and "
                             "simple/) is served, e.g. https://mirror.internal/; its index "
                             "URL (https://mirror.internal/simple/) names the same root")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="SET",
                        help="only this set (repeatable or A,B)")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="write pylock.<set>.toml files here (default: print the one "
                             "selected set's lockfile)")


def run(args: argparse.Namespace) -> int:
    from ..formats.mirror_lockfile import RelocationError, mirror_root, relocate_lockfile
    from ..fsutil import atomic_write, check_output_dir

    base_url = mirror_root(args.base_url)
    if args.output is not None:
        check_output_dir(args.output, "the lockfile output", hint="point -o at a directory")
    found = {p.name[len("pylock."):-len(".toml")]: p
             for p in sorted((args.directory / "lockfiles").glob("pylock.*.toml"))}
    if not found:
        raise RelocationError("holds no lockfiles/pylock.*.toml", where=str(args.directory),
                              hint="give the index tree (dist-index/) or an imported mirror")
    unknown = sorted(set(args.sets or ()) - set(found))
    if unknown:
        raise RelocationError(f"no set {', '.join(unknown)} (sets: {', '.join(found)})",
                              where=str(args.directory))
    chosen = {name: path for name, path in found.items() if not args.sets or name in args.sets}
    if args.output is None and len(chosen) != 1:
        raise RelocationError(f"{len(chosen)} sets to print ({', '.join(chosen)})",
                              where="--set", hint="choose one with --set, or give --output DIR")
    rewritten = {name: relocate_lockfile(path.read_bytes(), base_url=base_url, where=str(path))
                 for name, path in chosen.items()}
    if args.output is None:
        sys.stdout.write(next(iter(rewritten.values())).decode("utf-8"))
        return 0
    for name, data in rewritten.items():
        target = args.output / f"pylock.{name}.toml"
        atomic_write(target, data, only_if_changed=True)
        print(f"{target}: files under {base_url}files/")
    return 0
