"""PEP 503 HTML pages read through html.parser, and the resolution fields of the
one core-metadata reader."""

from __future__ import annotations

import io
import zipfile

from packaging.utils import canonicalize_name

from lockmirror.formats.core_metadata import parse_metadata, wheel_metadata_member
from lockmirror.net.simple_page import parse_html_page

DIGEST = "ab" * 32
PAGE = f"""<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.1">
<base href="https://files.example/base/"></head><body>
<!-- <a href="commented-9.0-py3-none-any.whl">not a file</a> -->
<A HREF='demo-1.0-py3-none-any.whl#sha256={DIGEST.upper()}'
   data-requires-python="&gt;=3.8" data-core-metadata="sha256={DIGEST}">demo</A>
<a href=demo-1.1.tar.gz data-yanked>demo 1.1</a>
<a href="demo-1.2.tar.gz" data-yanked="broken &amp; withdrawn"/>
<a href="../up/demo-1.3.zip?x=1#md5=00">zip</a>
<a>no href</a>
</body></html>
"""


def test_html_page_attributes_entities_and_base() -> None:
    page = parse_html_page(PAGE, "https://index.example/simple/demo/",
                           canonicalize_name("demo"), "main")
    files = {f.filename: f for f in page.files}
    assert list(files) == ["demo-1.0-py3-none-any.whl", "demo-1.1.tar.gz", "demo-1.2.tar.gz",
                           "demo-1.3.zip"]
    wheel = files["demo-1.0-py3-none-any.whl"]
    assert wheel.url == "https://files.example/base/demo-1.0-py3-none-any.whl"
    assert wheel.sha256 == DIGEST and wheel.metadata_sha256 == DIGEST and wheel.has_metadata
    assert wheel.requires_python == ">=3.8" and not wheel.yanked
    assert files["demo-1.1.tar.gz"].yanked and files["demo-1.1.tar.gz"].yanked_reason is None
    assert files["demo-1.2.tar.gz"].yanked_reason == "broken & withdrawn"
    assert files["demo-1.3.zip"].url == "https://files.example/up/demo-1.3.zip?x=1"
    assert files["demo-1.3.zip"].sha256 is None
    assert [str(v) for v in page.versions] == ["1.0", "1.1", "1.2", "1.3"]


def test_metadata_fields_packaging_cannot_parse_are_kept() -> None:
    text = ("Metadata-Version: 2.1\nName: x\nRequires-Python: >=3.8\nRequires-Python: >=3.9\n"
            "Requires-Dist: caf\xe9\nDynamic: Requires-Dist\n")
    metadata = parse_metadata(text.encode("latin-1"))  # not UTF-8: packaging gives up on it
    assert metadata.requires_dist == ("caf\xe9",)
    assert metadata.requires_python == ">=3.8"
    assert metadata.metadata_version == "2.1" and metadata.dynamic == {"requires-dist"}
    assert parse_metadata(b"Name: y\n").metadata_version == "1.0"


def test_wheel_metadata_member_prefers_the_wheels_own_dist_info() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("vendored-2.0.dist-info/METADATA", b"Name: vendored\n")
        archive.writestr("demo-1.0.dist-info/METADATA", b"Name: demo\n")
        archive.writestr("demo-1.0.data/x/METADATA", b"")
    with zipfile.ZipFile(buffer) as archive:
        assert wheel_metadata_member(archive, "demo-1.0-py3-none-any.whl") == \
            "demo-1.0.dist-info/METADATA"
