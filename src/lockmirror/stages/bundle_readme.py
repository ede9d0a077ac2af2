"""The bundle's ``README.txt``: the far side's instructions.

No content id or time goes in: it is a member, so it must not depend on what
depends on it. The two paths that check a bundle by hand (installing
lockmirror from ``tool/``, and unpacking without lockmirror) are each ONE
shell command, a ``( set -e ... )`` subshell: pasted whole, the first check
that fails stops it before pip runs or the tree is used, and says which.
They trust only what the operator put beside the bundle (``signer.pub``),
read through the absolute path of that directory (``$here``): no member of
the bundle, not even a symbolic link in it, can stand in for the key. They
unpack into a new ``unpacked.XXXXXX`` directory each run, which an ``EXIT``
trap removes when a check fails (a carrier's bytes are not left lying in the
operator's directory) and the install removes once done too, and the install
reinstalls, so a newer bundle's tool replaces the old one of the same version.
``tests/test_tool_set.py`` runs both on signed bundles and on bundles a
carrier altered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..formats import signing
from ..formats.bundle_format import (
    DELTA,
    INFO_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    TOOL_DIR,
    BundleInfo,
)
from .tool_set import requires_python

# what both pasted commands remove when they stop: the unpacked copy (made readable
# first: a mode the bundle set must not keep rm out) and the check's lists beside it
_CLEANUP = 'chmod -R u+rwX "$dir"; rm -rf "$dir" "$dir.odd" "$dir.all" "$dir.txt"'


def readme_text(info: BundleInfo, removes: Sequence[str] = ()) -> bytes:
    """README.txt for the bundle ``info`` describes (``removes``: the releases a
    delta's import takes out)."""
    stem = f"lockmirror-{info.name}-*"
    delta = (f"This is a DELTA bundle: it applies only onto the mirror whose last full or delta\n"
             f"bundle's manifest.json had sha256 {info.base_manifest_sha256}\n"
             f"(check with: cat /srv/mirror/.lockmirror/bundle-manifest.sha256, which a\n"
             f"refresh bundle leaves as it was; on a mirror no bundle was imported into:\n"
             f"sha256sum /srv/mirror/manifest.json).\n"
             + (f"Its import removes {len(removes)} release(s) that left the lock and the\n"
                f"retention window: {', '.join(removes)}\n" if removes else "")
             + "\n" if info.kind == DELTA else "")
    lockmirror = "lockmirror-venv/bin/lockmirror" if info.tool_python else "lockmirror"
    text = f"""\
lockmirror {info.kind} bundle of the mirror "{info.name}" (lockmirror {info.lockmirror_version})

{delta}The index manifest carried here has sha256 {info.index_manifest_sha256}.

Work in a directory holding only this bundle, its .sha256 and, for a signed bundle,
signer.pub: the signer's public key (one line, "ssh-ed25519 AAAA..."), as you were
given it, never taken from the media. The .sha256 travels with the bundle: it proves
the bundle arrived whole, not who made it.

1. Check the bundle arrived intact:
     sha256sum -c {stem}.sha256
{_install(stem, info)}3. Import: every file is checked before the new tree is swapped in atomically.
     {lockmirror} import {stem}.tar --into /srv/mirror [--pubkey signer.pub]
   Volumes of a split bundle: pass them all ({stem}.tar.0*).
4. Serve /srv/mirror with any static web server, or (for other machines to reach it):
     {lockmirror} serve /srv/mirror --host 0.0.0.0 --port 8080
   Clients (HOST: this machine's name; plain http needs --trusted-host in pip) name
   their target's file (http://HOST:8080/ lists each SET-TARGET), every file checked
   against the lockfile's hashes. Give them /srv/mirror/requirements/SET-TARGET.txt
   from this machine (step 5 re-checks it), copied beside them:
     pip install --index-url http://HOST:8080/simple/ --trusted-host HOST \\
         --require-hashes -r SET-TARGET.txt
   Read over http from the mirror instead (-r http://HOST:8080/requirements/...),
   it refuses a file altered on the mirror alone, not a mirror (or a network path)
   that alters the requirements file too.
   Their pip.conf, environment variables and uv settings:
     {lockmirror} pip-config http://HOST:8080/simple/
5. Re-check the mirror at any time: {lockmirror} verify /srv/mirror
6. What it holds, for review before import: index/sbom/mirror.cdx.json, the CycloneDX
   1.6 SBOM of every set (index/sbom/SET.cdx.json: one set), listed in
   index/manifest.json: each release's purl, file sha256s, license and why it is there.
{_tool_review(info)}
{_by_hand(stem, info.kind)}"""
    return text.encode()


def _tool_review(info: BundleInfo) -> str:
    """Step 6's line on ``tool/``: what the far side runs first is declared too."""
    if not info.tool_python:
        return ""
    return ("   tool.cdx.json: the same for every wheel in tool/ (lockmirror's own and its\n"
            "   dependencies'), which step 2 installs.\n")


def _install(stem: str, info: BundleInfo) -> str:
    """Step 2: lockmirror's own wheels, checked (signature, sha256, nothing else
    in ``tool/``) before pip runs, installed into ``lockmirror-venv/``."""
    if not info.tool_python:
        return ("2. This bundle does not carry lockmirror's own wheels (deltas leave them "
                "out):\n   use the lockmirror installed from a full bundle.\n")
    return f"""\
2. Install lockmirror with no network. Its wheels (tool/) are for
   {info.tool_python}
   (manylinux_2_X: glibc 2.X or newer; manylinux_2_28: RHEL 8, Debian 10, Ubuntu 20.04);
   pip picks the wheels of the Python and platform it runs on. The lines below are
   ONE command: paste them whole. It unpacks tool/ and the lists that pin it into a
   new directory (unpacked.XXXXXX), checks the signature when signer.pub is there
   (OpenSSH 8.1 or newer; a signed bundle without signer.pub stops), every wheel's
   sha256 against the list bundle.json pins and that tool/ holds nothing else; the
   first check that fails stops it before pip runs. Its last line says whether a
   signature was checked; run again from a newer bundle, it replaces the tool. A
   split bundle:
   cat {stem}.tar.0* | tar -xf - ... in place of tar -xf {stem}.tar ...
     ( set -e; here=$(pwd)
{_python_check(info.tool_python)}       dir=$(mktemp -d "$here/unpacked.XXXXXX")
       trap '{_CLEANUP}' EXIT   # pass or fail, the unpacked copy goes
       tar -xf {stem}.tar -C "$dir" --wildcards --no-wildcards-match-slash \\
           '*/{INFO_NAME}*' '*/{SUMS_NAME}' '*/{TOOL_DIR}/*'
       cd "$dir"/{stem}/
{_checks(f"grep '  {TOOL_DIR}/' {SUMS_NAME}", TOOL_DIR)}
       bundle=$(pwd); cd "$here"   # nothing of the bundle's on Python's path (-I too)
       python3 -I -m venv "$here/lockmirror-venv"
       # --isolated and no config file: only tool/, never a wheelhouse pip's settings name;
       # --force-reinstall: a newer bundle's tool replaces the old one (the same version),
       # and an install pip cannot resolve leaves the old one working
       PIP_CONFIG_FILE=/dev/null "$here/lockmirror-venv/bin/pip" --isolated install \\
           --force-reinstall --no-index --find-links "$bundle/{TOOL_DIR}/" lockmirror
       echo "checked ($signature) and installed: $here/lockmirror-venv/bin/lockmirror" )
   On another Python or machine it stops first, saying so. On another platform (libc,
   OS), or a Python older than lockmirror needs (Requires-Python {requires_python()}), pip says "No
   matching distribution", often naming a dependency (e.g. cryptography): check and
   unpack the bundle by hand instead (below).
"""


def _python_check(covered: str) -> str:
    """Step 2's first line: ``python3`` must be a Python, on a machine, whose wheels
    ``tool/`` carries (``covered``: ``CPython 3.13 (manylinux_2_28_x86_64); CPython
    3.12 (manylinux_2_28_aarch64)``), else one line saying so before anything is
    unpacked (pip would name a missing dependency instead, and leave a venv of the
    wrong Python). Only the version is checked when a part names no machine;
    nothing when ``covered`` names no version."""
    wanted = []
    for part in covered.split(";"):
        # a target may name a patch release (3.11.4): its minor version is what pip matches
        version = re.search(r"(?<![\d.])(\d+\.\d+)(?:\.\d+)?(?![\d.])", part)
        machines = re.findall(r"x86_64|aarch64|arm64|universal2|i686|ppc64le|s390x|armv7l",
                              part)
        if version is None:
            continue
        machines = [one for machine in machines  # a universal2 wheel: either Mac
                    for one in (("arm64", "x86_64") if machine == "universal2" else (machine,))]
        wanted += [f"{version.group(1)} {machine}" for machine in machines or ["*"]]
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return ""
    if any(item.endswith(" *") for item in wanted):  # some part names no machine
        wanted = list(dict.fromkeys(item.split()[0] + " *" for item in wanted))
    listed = "|".join(wanted)
    shown = ", ".join(item.removesuffix(" *") for item in wanted)
    return (f"       python3 -I -c 'import platform, sys; v = \"%d.%d\" % sys.version_info[:2]; "
            f"sys.exit(not {{v + \" \" + platform.machine(), v + \" *\"}} & "
            f"set(\"{listed}\".split(\"|\")))' \\\n"
            f"           || {{ echo \"tool/ holds no wheels for $(python3 -V 2>&1) on $(uname -m) "
            f"(only {shown}): check and unpack by hand (below)\"; exit 1; }}\n")


def _by_hand(stem: str, kind: str) -> str:
    """The path for a far side without lockmirror: coreutils, tar and OpenSSH's
    ``ssh-keygen -Y verify`` (the signature is SSHSIG)."""
    if kind == DELTA:
        return ("Without lockmirror: a delta applies only with `lockmirror import`; check\n"
                f"the bundle by hand with sha256sum -c {stem}.sha256 only.\n")
    return f"""\
Without lockmirror (no Python it runs on): check and unpack by hand with coreutils,
tar and OpenSSH 8.1 or newer. ONE command again: paste it whole; it unpacks into a new
directory, checks the signature when signer.pub is there, every member against the
list bundle.json pins and that nothing else was unpacked (a static server would serve
it), stops at the first check that fails and says at the end whether a signature was
checked. A split bundle:
cat {stem}.tar.0* | tar -xf - -C "$dir" in place of tar -xf ...
     ( set -e; here=$(pwd); dir=$(mktemp -d "$here/unpacked.XXXXXX")
       trap '{_CLEANUP}' EXIT   # a check failed: nothing unpacked is left
       sha256sum -c {stem}.sha256
       tar -xf {stem}.tar -C "$dir"
       cd "$dir"/{stem}/
{_checks(f"cat {SUMS_NAME}")}
       trap 'rm -f "$dir.odd" "$dir.all" "$dir.txt"' EXIT   # checked: the unpacked index stays
       echo "checked ($signature): index/ is the mirror: $(pwd)/index" )
   Then copy that index/ to /srv/mirror and serve it with any static web server.
"""


def _checks(listed: str, no_folders_in: str | None = None) -> str:
    """The lines both paths share, run in ``$dir/<bundle>/``: the signature (when
    ``$here/signer.pub`` exists; a signed bundle without it stops, so a key kept
    under another name cannot skip the check), SHA256SUMS against the very entry
    bundle.json pins for it (not any hash bundle.json holds: a package's own
    metadata is a pinned member too), each file ``listed`` against its sha256
    (``--strict``: no line skipped as malformed), then, with every directory
    made readable first (a mode set by the bundle must not hide a file from
    ``find``; each ``find`` writes a file so its failure stops the command),
    that nothing unpacked is anything but a regular file or a directory (a
    symbolic link checks now and points elsewhere later), that
    ``no_folders_in`` holds no directory (pip builds one in ``tool/`` as a
    project), and that the bundle directory holds exactly the files ``listed``
    besides the three lists."""
    pinned = f'"   \\"sha256\\": \\"$(sha256sum {SUMS_NAME} | cut -d\' \' -f1)\\","'
    return "\n".join([
        '       chmod -R u+rwX "$dir"',
        '       if [ -e "$here/signer.pub" ]; then',
        '         printf \'signer %s\\n\' "$(cat "$here/signer.pub")" > "$here/allowed_signers"',
        f'         ssh-keygen -Y verify -f "$here/allowed_signers" -I signer '
        f'-n {signing.NAMESPACE} \\',
        f'             -s {SIGNATURE_NAME} < {INFO_NAME}',
        '         signature="its signature checked against signer.pub"',
        f'       elif [ -e {SIGNATURE_NAME} ]; then',
        '         echo "a signed bundle: put the signer\'s public key beside it as signer.pub"',
        '         exit 1',
        '       else signature="UNSIGNED: no signature was checked"; fi',
        f"       test \"$(grep -A1 -x '  \"{SUMS_NAME}\": {{' {INFO_NAME} | tail -n 1)\" \\",
        f'           = {pinned} \\',
        f'           || {{ echo "{SUMS_NAME} is not the list {INFO_NAME} pins"; exit 1; }}',
        f'       {listed} | sha256sum -c --strict --quiet -',
        '       find "$dir" ! -type d ! -type f > "$dir.odd"',
        *([f'       find {no_folders_in} -mindepth 1 -type d >> "$dir.odd"']
          if no_folders_in else []),
        '       test ! -s "$dir.odd" \\',
        '           || { echo "not a regular file in the bundle: $(sed q "$dir.odd")"; exit 1; }',
        f'       find . ! -type d ! -path ./{SUMS_NAME} ! -path ./{INFO_NAME} '
        f'! -path ./{SIGNATURE_NAME} > "$dir.all"',
        '       sed \'s|^\\./||\' "$dir.all" | LC_ALL=C sort > "$dir.txt"',
        f'       {listed} | cut -c67- | LC_ALL=C sort | diff - "$dir.txt"',
    ])
