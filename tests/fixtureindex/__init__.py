"""The fixture index: synthetic distributions served by a real local HTTP index.

``from fixtureindex import build_wheel, build_sdist, build_catalogue, FixtureIndex``
(``tests/`` is on ``sys.path`` while pytest runs; benchmarks add it themselves).
See ``catalogue.py`` for the standard universe and ``server.py`` for the switches.
"""

from .builder import (
    build_backend_wheel,
    build_sdist,
    build_setuptools_wheel,
    build_wheel,
)
from .catalogue import Catalogue, CatalogueFile, build_catalogue
from .server import FixtureIndex, RequestRecord, ServedFile

__all__ = [
    "Catalogue",
    "CatalogueFile",
    "FixtureIndex",
    "RequestRecord",
    "ServedFile",
    "build_backend_wheel",
    "build_catalogue",
    "build_sdist",
    "build_setuptools_wheel",
    "build_wheel",
]
