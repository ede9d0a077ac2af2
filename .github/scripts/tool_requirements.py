"""Print lockmirror's locked dependencies as hashed pip requirements, wheels only.

The workflows install lockmirror's dependencies from the committed, reviewed
``lockfiles/pylock.lockmirror-tool.toml`` and nothing else: each package as
``name==version ; marker --hash=sha256:...`` with the hash of every wheel the lockfile
lists for it, for ``pip install --require-hashes --only-binary :all: --no-deps -r``.
It runs before lockmirror is installed, so it reads the lockfile with the standard
library only (tomllib, Python 3.11+). A package locked without a wheel stops it,
naming the package: pip would have to build it.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(lockfile: Path) -> list[str]:
    """One hashed requirement line per package of ``lockfile``."""
    with lockfile.open("rb") as stream:
        packages = tomllib.load(stream).get("packages", [])
    lines = []
    for package in packages:
        hashes = [wheel["hashes"]["sha256"] for wheel in package.get("wheels", [])]
        if not hashes:
            raise SystemExit(f"{lockfile}: {package['name']} {package['version']} has no "
                             "wheel locked (pip would build it): lock it with a wheel")
        marker = f" ; {package['marker']}" if "marker" in package else ""
        lines.append(f"{package['name']}=={package['version']}{marker} "
                     + " ".join(f"--hash=sha256:{digest}" for digest in hashes))
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tool_requirements.py LOCKFILE")
    print("\n".join(requirements(Path(sys.argv[1]))))
