"""The environment an sdist's build backend (code from the index) runs in.

An allow-list, not a deny-list: a CI job's environment holds credentials
under names nobody can list in advance (``ACTIONS_ID_TOKEN_REQUEST_URL``,
``SYSTEM_ACCESSTOKEN``, ``SSH_AUTH_SOCK``, ``DATABASE_URL``), and a
deny-list lets through every one it missed, while an allow-list that misses
a variable a build needs fails loudly and is fixed by one line here. What
is kept is what a build reads: paths, locale, temporary directories, pip's
and the proxies' settings, certificate bundles, compilers and their flags.
Even among those, a variable whose name says it is a secret, one
mirror.yaml names as a credential, and one whose value is a URL with a
user name or password in it (``PIP_EXTRA_INDEX_URL=https://u:p@host/``) are
left out. Proxies are the exception to that last rule: the build
requirements install through them, and a proxy's password grants only the
way out the build already has.

This is hygiene, not a boundary: a backend runs as the same user, so it can still
read the parent's ``/proc/<pid>/environ`` and the user's files (README, Threat
model, "An upstream index").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

_KEPT_NAMES = frozenset({
    # the process
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TEMP", "TMP", "TZ",
    "LANG", "LANGUAGE", "SOURCE_DATE_EPOCH", "PYTHONIOENCODING", "PYTHONUTF8",
    # certificates (pip behind a TLS-inspecting proxy)
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    # compilers, for a backend without prepare_metadata_for_build_wheel (it builds)
    "CC", "CXX", "CPP", "LD", "AR", "RANLIB", "FC", "CFLAGS", "CXXFLAGS", "CPPFLAGS",
    "LDFLAGS", "FFLAGS", "PKG_CONFIG", "PKG_CONFIG_PATH", "LD_LIBRARY_PATH",
    "LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "DYLD_LIBRARY_PATH",
    "MACOSX_DEPLOYMENT_TARGET", "ARCHFLAGS", "SDKROOT", "DEVELOPER_DIR", "MAKEFLAGS",
    "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN",
    # Windows
    "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "APPDATA", "LOCALAPPDATA",
    "USERPROFILE", "PROGRAMDATA", "PROGRAMFILES", "PROGRAMFILES(X86)", "COMMONPROGRAMFILES",
    "NUMBER_OF_PROCESSORS", "PROCESSOR_ARCHITECTURE", "INCLUDE", "LIB", "LIBPATH",
})
_KEPT_PREFIXES = ("LC_", "PIP_", "XDG_", "CMAKE_", "SETUPTOOLS_")
_PROXIES = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"})
_SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "CREDENTIAL")
_USERINFO = re.compile(r"://[^/?#\s]*@")


def build_environ(environ: Mapping[str, str],
                  secret_names: Collection[str] = ()) -> dict[str, str]:
    """The variables of ``environ`` a build backend may see (see the module's
    docstring); ``secret_names``: variables mirror.yaml names as credentials,
    left out whatever they are called. Names compare case-blind (Windows)."""
    secrets = {name.upper() for name in secret_names}
    kept: dict[str, str] = {}
    for name, value in environ.items():
        upper = name.upper()
        if upper in _PROXIES:
            kept[name] = value
        elif ((upper in _KEPT_NAMES or upper.startswith(_KEPT_PREFIXES))
              and upper not in secrets and not upper.endswith("_KEY")
              and not any(word in upper for word in _SECRET_WORDS)
              and not _USERINFO.search(value)):
            kept[name] = value
    return kept
