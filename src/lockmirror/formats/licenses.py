"""What license a release declares, read from its core metadata, as SPDX where it is unambiguous.

The order is the one PEP 639 gives: ``License-Expression`` first (an SPDX
expression by definition), then the free-text ``License`` field when it is an
SPDX expression itself (``MIT``, ``Apache-2.0 OR BSD-3-Clause``), then the
``License ::`` classifiers that name exactly one SPDX license. Anything else
is kept as the text the metadata gives (``Apache Software License`` names no
version, ``BSD License`` no clause count), and a release that declares
nothing is "unknown", said as such. :func:`same_license` tells a change of
license from a change of how it is written. No network; SPDX ids and expressions are
parsed by ``license-expression``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from ..spdx import equivalent, license_keys, satisfiable, spdx_expression

if TYPE_CHECKING:
    from .core_metadata import CoreMetadata

# Trove classifiers that name one SPDX license without doubt. Those that do
# not ("Apache Software License", "BSD License", "GNU General Public License
# v3 (GPLv3)": only or or-later?) stay text.
_CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: OSI Approved :: Apache Software License 2.0": "Apache-2.0",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)":
        "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)":
        "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)":
        "LGPL-2.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)":
        "LGPL-3.0-or-later",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)":
        "AGPL-3.0-or-later",
    "License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}
# The classifiers above that name a family, not one license, and the SPDX ids
# each is consistent with (fnmatch patterns): a release whose metadata moves
# between one and an SPDX expression of those ids (requests: "Apache Software
# License" -> Apache-2.0) says its license more or less exactly, not another one.
_FAMILIES = {
    "Apache Software License": ("Apache-*",),
    "BSD License": ("BSD-*",),
    "GNU General Public License (GPL)": ("GPL-*",),
    "GNU General Public License v2 (GPLv2)": ("GPL-2.0*",),
    "GNU General Public License v3 (GPLv3)": ("GPL-3.0*",),
    "GNU Lesser General Public License v2 (LGPLv2)": ("LGPL-2.0*", "LGPL-2.1*"),
    "GNU Lesser General Public License v3 (LGPLv3)": ("LGPL-3.0*",),
    "GNU Library or Lesser General Public License (LGPL)": ("LGPL-*",),
    "GNU Affero General Public License v3": ("AGPL-3.0*",),
    "GNU Free Documentation License (FDL)": ("GFDL-*",),
    "Academic Free License (AFL)": ("AFL-*",),
    "Artistic License": ("Artistic-*",),
    "Historical Permission Notice and Disclaimer (HPND)": ("HPND*",),
    "Zope Public License": ("ZPL-*",),
}
# what a classifier, as DeclaredLicense.text names it (its last part), is consistent with
_CONSISTENT = {**{c.rpartition(" :: ")[2]: (spdx,) for c, spdx in _CLASSIFIERS.items()},
               **_FAMILIES}
_MAX_TEXT = 200  # a License field holding the whole license text is cut to its start


@dataclass(frozen=True)
class DeclaredLicense:
    """A release's license: ``spdx`` (a normalized SPDX expression) when the
    metadata gives one unambiguously, else ``text`` as the metadata words it;
    both None when it declares nothing. ``source`` names the field used."""

    spdx: str | None
    text: str | None
    source: str  # "License-Expression", "License", "classifiers" or "none"

    @property
    def unknown(self) -> bool:
        return self.spdx is None and self.text is None

    def __str__(self) -> str:
        return self.spdx or self.text or "unknown"


UNKNOWN = DeclaredLicense(None, None, "none")


def declared_license(metadata: CoreMetadata) -> DeclaredLicense:
    """The license ``metadata`` declares, in PEP 639's order of trust."""
    expression = _field(metadata, "license_expression", "license-expression")
    if expression:
        spdx = spdx_expression(expression)
        return DeclaredLicense(spdx, None if spdx else expression, "License-Expression")
    text = _field(metadata, "license", "license")
    if text and text.strip().upper() not in ("UNKNOWN", "NONE", ""):
        spdx = spdx_expression(text)
        if spdx:
            return DeclaredLicense(spdx, None, "License")
    from_classifiers = _from_classifiers(metadata.raw.get("classifiers") or ())
    if from_classifiers is not None:
        return from_classifiers
    if text and text.strip().upper() not in ("UNKNOWN", "NONE", ""):
        first = text.strip().splitlines()[0]
        return DeclaredLicense(None, first[:_MAX_TEXT], "License")
    return UNKNOWN


CLASSIFIER_SEPARATOR = "; "  # between the license classifiers' names in a DeclaredLicense's text


def _from_classifiers(classifiers: Iterable[str]) -> DeclaredLicense | None:
    named = sorted({c for c in classifiers if c.startswith("License ::")})
    if not named:
        return None
    ids = [_CLASSIFIERS.get(c) for c in named]
    if all(ids):  # several classifiers: PEP 639 reads them as a choice
        return DeclaredLicense(" OR ".join(sorted(set(i for i in ids if i))), None,
                               "classifiers")
    return DeclaredLicense(None, CLASSIFIER_SEPARATOR.join(c.rpartition(" :: ")[2] for c in named),
                           "classifiers")


def same_license(first: DeclaredLicense, second: DeclaredLicense) -> bool:
    """Whether two declarations say one license, however written: the same words,
    equivalent SPDX expressions, or license classifiers and an SPDX expression
    consistent with them, each classifier matched by an id the expression names and
    each id by a classifier ("Apache Software License" and ``Apache-2.0``, "BSD
    License" and ``BSD-3-Clause``). Anything else differs (``LGPL-2.0-or-later``
    and ``0BSD``; "BSD License" and ``MIT``; "unknown" and any license)."""
    if str(first) == str(second):
        return True
    if first.spdx is not None and second.spdx is not None:
        return equivalent(first.spdx, second.spdx)
    words, expression = (first, second) if second.spdx is not None else (second, first)
    if expression.spdx is None or words.text is None or words.source != "classifiers":
        return False
    families = [_CONSISTENT.get(name) for name in words.text.split(CLASSIFIER_SEPARATOR)]
    if not all(families):
        return False  # a classifier that names no license ("Other/Proprietary License")
    keys = license_keys(expression.spdx)

    def consistent(key: str, family: tuple[str, ...] | None) -> bool:
        return any(fnmatchcase(key, pattern) for pattern in family or ())

    return (all(any(consistent(key, family) for family in families) for key in keys)
            and all(any(consistent(key, family) for key in keys) for family in families))


def _field(metadata: CoreMetadata, key: str, header: str) -> str | None:
    value = metadata.raw.get(key)
    if isinstance(value, str):
        return value
    values = metadata.unparsed.get(header)
    return values[0] if values else None


def license_refusal(declared: DeclaredLicense, *, allow: Sequence[str],
                    deny: Sequence[str]) -> str | None:
    """Why the lists refuse ``declared`` (an SPDX expression), or None when some
    choice it offers uses only licenses that are not denied and, when ``allow``
    is given, allowed. ``GPL-3.0-only OR MIT`` passes ``deny: [GPL-3.0-only]``;
    ``GPL-3.0-only AND MIT`` does not."""
    if declared.spdx is None:
        raise ValueError("only an SPDX expression can be judged by the lists")
    denied = {key for entry in deny for key in license_keys(entry)}
    allowed = {key for entry in allow for key in license_keys(entry)}

    def acceptable(key: str) -> bool:
        return key not in denied and (not allowed or key in allowed)

    if satisfiable(declared.spdx, acceptable):
        return None
    named = license_keys(declared.spdx)
    if named & denied:
        which = ", ".join(sorted(named & denied))
        # the denied ids in the expression, unless it is just that one
        return f"license {declared.spdx} is denied" + (
            "" if which == str(declared.spdx) else f" ({which})")
    return f"license {declared.spdx} is not in the allowed list"
