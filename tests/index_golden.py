"""The index stage's golden trees: path -> sha256 of every file ``build_index``
writes for the fixture mirror (tests/index_mirror.py), kept in
``tests/data/index_golden.json`` and compared by tests/test_index.py.

Regenerate it (after a deliberate change to what a page contains) with one command:

    .venv/bin/python tests/index_golden.py

and review the diff of tests/data/index_golden.json. The fixture mirror's
``host`` target is this interpreter's Python, so the file records which minor
version it was made with; the test skips on another one.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from fixtureindex import build_catalogue
from helpers import tree_digests
from index_mirror import make_fixture_mirror
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.stages.index import build_index

GOLDEN = Path(__file__).parent / "data" / "index_golden.json"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
TITLE = "Fixture mirror"
# each golden tree: its name -> the releases left out (the quarantine list)
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "plain": (),
    "quarantined": (("yanky", "1.0"), ("native", "1.0")),
}


def build_trees(work: Path) -> dict[str, dict[str, str]]:
    """Each variant of the fixture mirror's index, built from nothing under ``work``."""
    mirror = make_fixture_mirror(build_catalogue(work / "catalogue"), work / "mirror")
    trees = {}
    for variant, excluded in VARIANTS.items():
        out = work / variant / "dist-index"
        exclude = [(canonicalize_name(name), Version(version)) for name, version in excluded]
        build_index(mirror.lockfiles, mirror.store, out, title=TITLE, exclude=exclude)
        trees[variant] = tree_digests(out)
    return trees


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="index-golden-") as work:
        trees = build_trees(Path(work))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({"python": PYTHON, "trees": trees}, indent=1,
                                 sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({', '.join(f'{k}: {len(v)} files' for k, v in trees.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
