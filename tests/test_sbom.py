"""SBOMs (CycloneDX 1.6) and declared licenses.

The documents are checked against the official CycloneDX 1.6 JSON schema (as
shipped with cyclonedx-python-lib), against the lockfile they describe (every
file's sha256) and against the METADATA in the store (the license); two
renders of the same inputs are the same bytes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fixtureindex import Catalogue, FixtureIndex
from helpers import mirror_yaml
from packaging.version import Version

from lockmirror import __version__
from lockmirror.cli import main
from lockmirror.formats.core_metadata import parse_metadata
from lockmirror.formats.licenses import declared_license
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import Store
from lockmirror.fsutil import sha256_bytes
from lockmirror.stages.sbom import MIRROR_DOCUMENT, sbom_documents

TARGET = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      'python_version == "3.11"')


def metadata(name: str, version: str, *headers: str) -> bytes:
    lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]
    return ("\n".join(lines) + "\n\n").encode()


@pytest.mark.parametrize(("headers", "expected", "source"), [
    (["License-Expression: GPL-3.0-only OR mit"], "GPL-3.0-only OR MIT", "License-Expression"),
    (["License: Apache-2.0", "Classifier: License :: OSI Approved :: MIT License"],
     "Apache-2.0", "License"),
    (["License: see LICENSE", "Classifier: License :: OSI Approved :: MIT License"],
     "MIT", "classifiers"),
    (["Classifier: License :: OSI Approved :: BSD License"], "BSD License", "classifiers"),
    (["License: The Foo Public License\n        with many lines"], "The Foo Public License",
     "License"),
    (["License: UNKNOWN"], "unknown", "none"),
    ([], "unknown", "none"),
    # docutils' (license-expression raised on the comma: every SBOM of a mirror with it)
    (["License: public domain, Python, 2-Clause BSD, GPL 3 (see COPYING.txt)"],
     "public domain, Python, 2-Clause BSD, GPL 3 (see COPYING.txt)", "License"),
    (["License-Expression: MIT, BSD"], "MIT, BSD", "License-Expression"),
])
def test_the_declared_license_is_read_in_pep_639_order(headers: list[str], expected: str,
                                                       source: str) -> None:
    found = declared_license(parse_metadata(metadata("demo", "1.0", *headers)))
    assert (str(found), found.source) == (expected, source)
    assert found.unknown == (expected == "unknown")


def store_metadata(store: Store, data: bytes) -> str:
    digest = sha256_bytes(data)
    store.write(digest, data)
    return digest


def package(store: Store, name: str, version: str, *headers: str,
            dependencies: tuple[str, ...] = (), with_metadata: bool = True) -> LockedPackage:
    digest = store_metadata(store, metadata(name, version, *headers)) if with_metadata else None
    wheel = LockedFile(filename=f"{name}-{version}-py3-none-any.whl",
                       url=f"https://files.example/{name}-{version}-py3-none-any.whl",
                       size=100, sha256=sha256_bytes(f"{name} {version} wheel".encode()),
                       metadata_sha256=digest)
    sdist = LockedFile(filename=f"{name}-{version}.tar.gz",
                       url=f"https://files.example/{name}-{version}.tar.gz",
                       size=200, sha256=sha256_bytes(f"{name} {version} sdist".encode()))
    return LockedPackage(name=name, version=Version(version), targets=("host",),  # type: ignore[arg-type]
                         index="https://pypi.org/simple/", wheels=(wheel,), sdist=sdist,
                         dependencies=dependencies)


@pytest.fixture
def lockfiles(tmp_path: Path) -> tuple[list[Lockfile], Store]:
    store = Store(tmp_path / "store")
    core = Lockfile(set_name="core", requirements=("webapp==2.0",), targets=(TARGET,),
                    input_hash="x", packages=(
                        package(store, "webapp", "2.0", "License-Expression: MIT",
                                "Author: Ada", "Author-email: ada@example.org",
                                "Summary: the app", dependencies=("copyleft", "mystery")),
                        package(store, "copyleft", "1.0", "License-Expression: GPL-3.0-only"),
                        package(store, "mystery", "0.1", with_metadata=False)))
    tools = Lockfile(set_name="tools", requirements=("copyleft",), targets=(TARGET,),
                     input_hash="y", packages=(
                         package(store, "copyleft", "1.0", "License-Expression: GPL-3.0-only"),))
    return [core, tools], store


def test_sboms_validate_and_match_the_lockfile_and_the_metadata(
        lockfiles: tuple[list[Lockfile], Store]) -> None:
    sets, store = lockfiles
    documents = sbom_documents(sets, store, mirror_name="demo", tool_version="9.9",
                               commit="c0ffee", source_date_epoch=1700000000)
    assert sorted(documents) == ["core.cdx.json", MIRROR_DOCUMENT, "tools.cdx.json"]
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    for name, data in documents.items():
        assert validator.validate_str(data.decode()) is None, name

    core = json.loads(documents["core.cdx.json"])
    assert core["specVersion"] == "1.6"
    assert core["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    assert core["metadata"]["tools"]["components"][0]["name"] == "lockmirror"
    assert {"name": "lockmirror:mirror.yaml-commit", "value": "c0ffee"} in \
        core["metadata"]["properties"]
    by_ref = {c["bom-ref"]: c for c in core["components"]}
    webapp = by_ref["pkg:pypi/webapp@2.0"]
    locked = {f.filename: f.sha256 for f in sets[0].packages[0].files}
    assert {p["name"]: p["hashes"][0]["content"] for p in webapp["components"]} == locked
    assert {p["purl"] for p in webapp["components"]} == {
        f"pkg:pypi/webapp@2.0?file_name={name}" for name in locked}
    assert webapp["licenses"] == [{"expression": "MIT"}]
    assert webapp["authors"] == [{"email": "ada@example.org", "name": "Ada"}]
    assert by_ref["pkg:pypi/copyleft@1.0"]["licenses"] == [{"expression": "GPL-3.0-only"}]
    mystery = by_ref["pkg:pypi/mystery@0.1"]
    assert "licenses" not in mystery
    assert {"name": "lockmirror:license", "value": "unknown: no core metadata in the store"} \
        in mystery["properties"]
    graph = {d["ref"]: d.get("dependsOn", []) for d in core["dependencies"]}
    assert graph["pkg:pypi/webapp@2.0"] == ["pkg:pypi/copyleft@1.0", "pkg:pypi/mystery@0.1"]
    assert graph["lockmirror:demo set core"] == ["pkg:pypi/webapp@2.0"]

    everything = json.loads(documents[MIRROR_DOCUMENT])
    copyleft = next(c for c in everything["components"] if c["name"] == "copyleft")
    assert [p["value"] for p in copyleft["properties"] if p["name"] == "lockmirror:set"] == \
        ["core", "tools"]


def test_license_classifiers_are_one_license_object_each_and_no_invented_expression(
        tmp_path: Path) -> None:
    """python-dateutil's classifiers (Apache Software License, BSD License: no one SPDX
    id for the second) were one license named "Apache Software License; BSD License";
    they say neither AND nor OR, so each is its own license object, no expression."""
    store = Store(tmp_path / "store")
    lockfile = Lockfile(set_name="core", requirements=("python-dateutil",), targets=(TARGET,),
                        input_hash="x", packages=(package(
                            store, "python-dateutil", "2.9.0.post0",
                            "Classifier: License :: OSI Approved :: BSD License",
                            "Classifier: License :: OSI Approved :: Apache Software License"),))
    documents = sbom_documents([lockfile], store, mirror_name="demo", tool_version="9.9")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(
        documents["core.cdx.json"].decode()) is None
    [component] = json.loads(documents["core.cdx.json"])["components"]
    assert sorted(component["licenses"], key=json.dumps) == [
        {"license": {"name": "Apache Software License"}}, {"license": {"name": "BSD License"}}]
    assert {"name": "lockmirror:license-source", "value": "classifiers"} in \
        component["properties"]


def test_two_renders_are_the_same_bytes_and_no_clock_without_an_epoch(
        lockfiles: tuple[list[Lockfile], Store]) -> None:
    sets, store = lockfiles
    first = sbom_documents(sets, store, mirror_name="demo", tool_version="9.9")
    assert first == sbom_documents(sets, store, mirror_name="demo", tool_version="9.9")
    document = json.loads(first["core.cdx.json"])
    assert "timestamp" not in document["metadata"]
    # the serial number follows the content: a UUID of the document's sha256 with a zero serial
    zeroed = first["core.cdx.json"].replace(document["serialNumber"].encode(),
                                            uuid.UUID(int=0).urn.encode())
    assert document["serialNumber"] == uuid.UUID(sha256_bytes(zeroed)[:32], version=5).urn
    other = sbom_documents(sets[:1], store, mirror_name="other", tool_version="9.9")
    assert json.loads(other["core.cdx.json"])["serialNumber"] != document["serialNumber"]


def test_lockmirror_sbom_prints_a_set_and_writes_every_document(
        tmp_path: Path, fixture_index: FixtureIndex, own_paths: None,
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    config = tmp_path / "mirror.yaml"
    config.write_text(mirror_yaml(fixture_index.url, {"core": ["beta==1.0"]}))
    assert main(["lock", "--config", str(config)]) == 0
    assert main(["fetch", "--config", str(config)]) == 0
    capsysbinary.readouterr()
    assert main(["sbom", "--config", str(config), "--set", "core"]) == 0
    printed, said = capsysbinary.readouterr()
    assert said == b""  # fetched: every release's metadata is in the store
    document = json.loads(printed)
    assert {c["name"] for c in document["components"]} >= {"beta", "alpha"}
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(printed.decode()) is None
    assert main(["sbom", "--config", str(config), "-o", str(tmp_path / "sbom")]) == 0
    assert sorted(p.name for p in (tmp_path / "sbom").iterdir()) == [
        "core.cdx.json", MIRROR_DOCUMENT]
    assert (tmp_path / "sbom" / "core.cdx.json").read_bytes() == printed
    assert main(["sbom", "--config", str(config), "--set", "nope"]) == 2
    shutil.rmtree(tmp_path / ".store")  # not fetched (a CI job that only locks): said so
    capsysbinary.readouterr()
    assert main(["sbom", "--config", str(config)]) == 0
    said = capsysbinary.readouterr().err.decode()
    assert said.startswith(f"lockmirror: warning: {len(document['components'])} releases "
                           "without core metadata in the store")
    assert "run `lockmirror fetch` first" in said and said.count("\n") == 1


# --------------------------------------------------------------------------
# The index writes them; bundles carry them (issue 23)
# --------------------------------------------------------------------------

def indexed(url: str, index: Path) -> str:
    """mirror.yaml of two sets whose index is written to ``index``."""
    return mirror_yaml(url, {"core": ["beta==1.0", "copyleft"], "tools": ["speedup"]},
                       extra=f"paths:\n  index: {index}\n")


def _fetched_mirror(tmp_path: Path, index: FixtureIndex, out: str) -> Path:
    config = tmp_path / "mirror.yaml"
    config.write_text(indexed(index.url, tmp_path / out))
    assert main(["lock", "--config", str(config)]) == 0
    assert main(["fetch", "--config", str(config)]) == 0
    return config


def test_the_index_writes_each_sets_sbom_and_the_bundle_carries_them(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    from lockmirror.stages.bundle import build_bundle

    for name in ("LOCKMIRROR_STORE", "LOCKMIRROR_CACHE", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    config = _fetched_mirror(tmp_path, fixture_index, "dist-index")
    assert main(["index", "--config", str(config)]) == 0
    index = tmp_path / "dist-index"
    names = ["sbom/core.cdx.json", "sbom/mirror.cdx.json", "sbom/tools.cdx.json"]
    assert sorted(str(p.relative_to(index)) for p in (index / "sbom").iterdir()) == names
    manifest = json.loads((index / "manifest.json").read_text())
    listed = json.dumps(manifest)
    assert all(f'"{name}"' in listed for name in names)
    landing = (index / "index.html").read_text()
    for name in names:
        assert f'<a href="{name}">' in landing

    # a second build elsewhere: the same bytes; a rebuild keeps them (no rewrite)
    config.write_text(indexed(fixture_index.url, tmp_path / "again"))
    assert main(["index", "--config", str(config)]) == 0
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (index / name).read_bytes()
    config.write_text(indexed(fixture_index.url, index))
    (index / "sbom" / "tools.cdx.json").unlink()  # a missing document is written again
    assert main(["index", "--config", str(config)]) == 0
    assert (index / "sbom" / "tools.cdx.json").read_bytes() == \
        (tmp_path / "again" / "sbom" / "tools.cdx.json").read_bytes()

    result = build_bundle(index, lockfile_dir=tmp_path / "lockfiles", mirror_yaml=config,
                          out_dir=tmp_path / "dist", name="fixture", tool=False,
                          source_date_epoch=1_700_000_000)
    with tarfile.open(result.path) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        readme = tar.extractfile(members["README.txt"]).read().decode()  # type: ignore[union-attr]
        carried = {name: tar.extractfile(members[f"index/{name}"]).read()  # type: ignore[union-attr]
                   for name in names}
    assert "index/sbom/mirror.cdx.json" in readme
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    for name, data in carried.items():
        assert validator.validate_str(data.decode()) is None, name
    document = json.loads(carried["sbom/mirror.cdx.json"])
    by_ref = {c["bom-ref"]: c for c in document["components"]}
    copyleft = by_ref["pkg:pypi/copyleft@2.0"]
    lockfile = Lockfile.read(tmp_path / "lockfiles" / "pylock.core.toml")
    locked = next(p for p in lockfile.packages if p.name == "copyleft")
    assert {f["name"]: f["hashes"][0]["content"] for f in copyleft["components"]} == \
        {f.filename: f.sha256 for f in locked.files}
    wheel = catalogue.find("copyleft", "2.0", wheel=True)
    # the wheel's METADATA, read as text, declares what the SBOM says
    assert "License-Expression: GPL-3.0-only" in wheel.metadata.decode().splitlines()
    assert copyleft["licenses"] == [{"expression": "GPL-3.0-only"}]


def test_the_explicit_index_form_writes_sboms_only_when_asked(
        tmp_path: Path, fixture_index: FixtureIndex, own_paths: None) -> None:
    _fetched_mirror(tmp_path, fixture_index, "dist-index")
    lockfiles = [str(p) for p in sorted((tmp_path / "lockfiles").glob("pylock.*.toml"))]
    store = str(tmp_path / ".store")
    assert main(["index", *lockfiles, "--store", store, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "sbom").exists()
    assert "sbom/" not in (tmp_path / "plain" / "index.html").read_text()
    assert main(["index", *lockfiles, "--store", store, "--out", str(tmp_path / "asked"),
                 "--sbom"]) == 0
    assert sorted(p.name for p in (tmp_path / "asked" / "sbom").iterdir()) == [
        "core.cdx.json", "mirror.cdx.json", "tools.cdx.json"]


def test_sbom_set_into_a_directory_writes_that_sets_document_only(
        tmp_path: Path, fixture_index: FixtureIndex, own_paths: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _fetched_mirror(tmp_path, fixture_index, "dist-index")
    out = tmp_path / "sbom"
    assert main(["sbom", "--config", str(config), "-o", str(out)]) == 0
    whole = (out / MIRROR_DOCUMENT).read_bytes()
    assert {c["name"] for c in json.loads(whole)["components"]} >= {"beta", "speedup"}
    capsys.readouterr()
    assert main(["sbom", "--config", str(config), "--set", "tools", "-o", str(out)]) == 0
    printed, said = capsys.readouterr()
    assert printed == f"{out / 'tools.cdx.json'}\n"  # the one file written
    assert "mirror.cdx.json (the whole mirror) is written without --set" in said
    assert (out / MIRROR_DOCUMENT).read_bytes() == whole  # still every set's, not tools' alone
    alone = tmp_path / "alone"
    assert main(["sbom", "--config", str(config), "--set", "tools", "-o", str(alone)]) == 0
    assert [p.name for p in alone.iterdir()] == ["tools.cdx.json"]


@pytest.mark.parametrize("chosen", [["--set", "core", "--set", "tools"], ["--set", "core,tools"],
                                    ["--set", "tools,core", "--set", "core"]])
def test_sbom_takes_several_sets_as_other_commands_do(
        chosen: list[str], tmp_path: Path, fixture_index: FixtureIndex, own_paths: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``sbom --set a --set b -o DIR`` wrote b.cdx.json only and ``--set a,b`` said "no
    set named 'a,b'": each named set's document is written, as ``fetch --set a,b`` takes
    them; printing several documents on stdout is refused in one line."""
    config = _fetched_mirror(tmp_path, fixture_index, "dist-index")
    out = tmp_path / "sbom"
    capsys.readouterr()
    assert main(["sbom", "--config", str(config), *chosen, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["core.cdx.json", "tools.cdx.json"]
    printed = capsys.readouterr().out.splitlines()
    assert sorted(printed) == [str(out / "core.cdx.json"), str(out / "tools.cdx.json")]
    assert main(["sbom", "--config", str(config), *chosen]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "2 sets' SBOMs to print" in captured.err and "-o DIR" in captured.err


def test_the_index_parses_a_changed_lockfile_once_for_its_pages_and_sboms(
        tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lockfile the index parsed (and relocated for its mirror copy) is the one
    its SBOM describes: same bytes as from a fresh read, and no second parse."""
    from index_mirror import make_fixture_mirror

    from lockmirror.stages.index import build_index

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    mirror = make_fixture_mirror(catalogue, tmp_path)
    build_index(mirror.lockfiles, mirror.store, mirror.out, sbom="fixture")
    changed = mirror.lockfiles[0]
    changed.write_text(changed.read_text() + "# changed\n")
    parsed: list[str] = []
    original = Lockfile.from_toml.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Lockfile], data: dict[str, Any], *, where: str = "") -> Lockfile:
        parsed.append(where)
        return original(cls, data, where=where)  # type: ignore[no-any-return]

    monkeypatch.setattr(Lockfile, "from_toml", classmethod(counting))
    build_index(mirror.lockfiles, mirror.store, mirror.out, sbom="fixture")
    assert sorted(parsed) == sorted(str(p) for p in mirror.lockfiles)  # each one once
    monkeypatch.undo()
    fresh = sbom_documents([Lockfile.read(p) for p in mirror.lockfiles], mirror.store,
                           mirror_name="fixture", tool_version=__version__)
    for name, data in fresh.items():
        assert (mirror.out / "sbom" / name).read_bytes() == data, name


def test_the_index_rewrites_its_sboms_when_the_quarantine_list_changes(
        tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: after ``audit --quarantine`` and ``doit`` the
    index's SBOMs were byte-identical to before (the list was no input of their key),
    still declaring the release no longer served. The SBOMs of the index follow the
    list both ways, as ``sbom_documents`` renders them with it."""
    from index_mirror import make_fixture_mirror
    from packaging.utils import canonicalize_name

    from lockmirror.stages.index import build_index

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    mirror = make_fixture_mirror(catalogue, tmp_path)
    build_index(mirror.lockfiles, mirror.store, mirror.out, sbom="fixture")
    before = {p.name: p.read_bytes() for p in (mirror.out / "sbom").iterdir()}
    assert b"pkg:pypi/yanky@1.0" in before["extra.cdx.json"]
    listed = {(canonicalize_name("yanky"), Version("1.0"))}
    build_index(mirror.lockfiles, mirror.store, mirror.out, sbom="fixture", exclude=listed)
    lockfiles = [Lockfile.read(p) for p in mirror.lockfiles]
    fresh = sbom_documents(lockfiles, mirror.store, mirror_name="fixture",
                           tool_version=__version__, quarantined=listed)
    for name, data in fresh.items():
        assert (mirror.out / "sbom" / name).read_bytes() == data, name
    assert b"pkg:pypi/yanky@1.0" not in fresh["extra.cdx.json"]
    build_index(mirror.lockfiles, mirror.store, mirror.out, sbom="fixture")  # off the list
    assert {p.name: p.read_bytes() for p in (mirror.out / "sbom").iterdir()} == before


REPO_LOCKFILES = Path(__file__).resolve().parents[1] / "lockfiles"


def _bundled_lockfiles() -> list[Lockfile]:
    from lockmirror.stages.tool_set import TOOL_SET

    return [Lockfile.read(p) for p in sorted(REPO_LOCKFILES.glob("pylock.*.toml"))
            if p.name != f"pylock.{TOOL_SET}.toml"]


def _check_bundled(documents: dict[str, bytes], lockfiles: list[Lockfile]) -> dict[str, Any]:
    """Every document validates; each release's files carry the lockfile's sha256s."""
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    for name, data in documents.items():
        assert validator.validate_str(data.decode()) is None, name
    everything = json.loads(documents[MIRROR_DOCUMENT])
    by_ref = {c["bom-ref"]: c for c in everything["components"]}
    for lockfile in lockfiles:
        for package in lockfile.packages:
            component = by_ref[f"pkg:pypi/{package.name}@{package.version}"]
            assert {f["name"]: f["hashes"][0]["content"] for f in component["components"]} \
                == {f.filename: f.sha256 for f in package.files}
    return by_ref


def test_the_bundled_mirrors_sboms_validate_without_metadata(tmp_path: Path) -> None:
    lockfiles = _bundled_lockfiles()
    assert {lf.set_name for lf in lockfiles} >= {"core", "misp", "shuffle"}
    documents = sbom_documents(lockfiles, Store(tmp_path / "empty-store"), mirror_name="bundled",
                               tool_version="9.9")
    by_ref = _check_bundled(documents, lockfiles)
    unknown = {"name": "lockmirror:license", "value": "unknown: no core metadata in the store"}
    assert all(unknown in c["properties"] for c in by_ref.values())


@pytest.mark.network
def test_the_bundled_mirrors_sboms_validate_with_pypis_metadata(tmp_path: Path) -> None:
    """The core set's core metadata from PyPI (as lock reads it: the PEP 658 file,
    else METADATA out of the wheel by Range requests), into a store this test
    builds under the lockfile's metadata sha256."""
    from lockmirror.config_schema import SourceConfig
    from lockmirror.net.index_client import IndexClient

    lockfiles = [lf for lf in _bundled_lockfiles() if lf.set_name == "core"]
    store = Store(tmp_path / "store")
    source = SourceConfig(name="pypi", url="https://pypi.org/simple/")
    with IndexClient([source], cache_dir=tmp_path / "http") as client:
        for package in lockfiles[0].packages:
            locked = {f.filename: f for f in package.files if f.metadata_sha256}
            page = client.project(package.name)
            served = next((f for f in page.files if f.filename in locked), None)
            if served is None:
                continue
            data = client.metadata(served)
            if sha256_bytes(data) == locked[served.filename].metadata_sha256:
                store_metadata(store, data)
    documents = sbom_documents(lockfiles, store, mirror_name="bundled", tool_version="9.9")
    by_ref = _check_bundled(documents, lockfiles)
    licensed = [c for c in by_ref.values() if "licenses" in c]
    assert len(licensed) > len(by_ref) // 2
    for package in lockfiles[0].packages:
        wheel = next((f for f in package.files if f.metadata_sha256), None)
        if wheel is not None and wheel.metadata_sha256 and store.has(wheel.metadata_sha256):
            declared = declared_license(parse_metadata(
                store.path(wheel.metadata_sha256).read_bytes()))
            component = by_ref[f"pkg:pypi/{package.name}@{package.version}"]
            if declared.spdx:
                assert component["licenses"] == [{"expression": declared.spdx}]


def test_a_file_only_a_retained_revision_locks_is_declared(tmp_path: Path) -> None:
    """The index serves every file of a release any revision it keeps locks; the SBOM
    declares each (a wheel for a platform since dropped, say), valid and repeatable."""
    from dataclasses import replace

    from lockmirror.fsutil import sha256_bytes

    store = Store(tmp_path / "store")
    current = Lockfile(set_name="core", requirements=("a",), targets=(TARGET,), input_hash="x",
                       packages=(package(store, "a", "2.0"), package(store, "b", "1.0")))
    dropped = LockedFile(filename="b-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                         url="https://files.example/b.whl", size=1,
                         sha256=sha256_bytes(b"a platform wheel since dropped"))
    earlier_b = package(store, "b", "1.0")
    earlier = Lockfile(set_name="core", requirements=("a",), targets=(TARGET,), input_hash="x",
                       packages=(package(store, "a", "1.0"),
                                 replace(earlier_b, wheels=(*earlier_b.wheels, dropped))))
    documents = sbom_documents([current], store, mirror_name="m", tool_version="1",
                               retained=[(earlier, "kept for the previous lock")])
    assert documents == sbom_documents([current], store, mirror_name="m", tool_version="1",
                                       retained=[(earlier, "kept for the previous lock")])
    for data in documents.values():
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    components = {c["name"] + " " + c["version"]: c
                  for c in json.loads(documents[MIRROR_DOCUMENT])["components"]}
    assert dropped.sha256 in json.dumps(components["b 1.0"])
    assert {"name": "lockmirror:kept-for", "value": "kept for the previous lock"} in \
        components["a 1.0"]["properties"]


def test_a_quarantined_release_is_no_component_and_is_named_as_such(
        lockfiles: tuple[list[Lockfile], Store]) -> None:
    """Found by an outside tester: after ``audit --quarantine`` the SBOMs still listed
    the quarantined release as a component, files and hashes, though the mirror no
    longer serves it. A document declares what the mirror serves: the release is no
    component (nor in the dependency graph), and a ``lockmirror:quarantined``
    property of the document says the lock pins it. The documents stay valid."""
    sets, store = lockfiles
    earlier = Lockfile(set_name="core", requirements=("webapp",), targets=(TARGET,),
                       input_hash="w", packages=(package(store, "webapp", "1.0"),))
    documents = sbom_documents(sets, store, mirror_name="demo", tool_version="9.9",
                               retained=[(earlier, "kept for the previous lock")],
                               quarantined=[("copyleft", Version("1.0")), ("webapp", "1.0")])
    for name, data in documents.items():
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None, name
    core = json.loads(documents["core.cdx.json"])
    assert sorted(c["bom-ref"] for c in core["components"]) == [
        "pkg:pypi/mystery@0.1", "pkg:pypi/webapp@2.0"]
    graph = {d["ref"]: d.get("dependsOn", []) for d in core["dependencies"]}
    assert graph == {"lockmirror:demo set core": ["pkg:pypi/webapp@2.0"],
                     "pkg:pypi/webapp@2.0": ["pkg:pypi/mystery@0.1"],
                     "pkg:pypi/mystery@0.1": []}
    assert [p["value"] for p in core["metadata"]["properties"]
            if p["name"] == "lockmirror:quarantined"] == ["copyleft==1.0", "webapp==1.0"]
    tools = json.loads(documents["tools.cdx.json"])
    assert tools.get("components", []) == []
    assert {"name": "lockmirror:quarantined", "value": "copyleft==1.0"} in \
        tools["metadata"]["properties"]
    everything = json.loads(documents[MIRROR_DOCUMENT])
    assert sorted(c["bom-ref"] for c in everything["components"]) == [
        "pkg:pypi/mystery@0.1", "pkg:pypi/webapp@2.0"]


def test_uncommitted_changes_give_no_date_and_claim_no_commit(
        tmp_path: Path, fixture_index: FixtureIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: with mirror.yaml and a lockfile edited and not
    committed, the index and the bundle took the old HEAD's time ("mtime T from git log
    (lockfiles)") and the SBOM named HEAD as mirror.yaml's commit: an earlier bundle of
    the same date then went in over a later one with no --allow-older. Uncommitted
    lockfiles give no date, and a modified mirror.yaml names its commit as changed since."""
    from helpers import git

    from lockmirror.stages.bundle import build_bundle

    for name in ("LOCKMIRROR_STORE", "LOCKMIRROR_CACHE", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    config = _fetched_mirror(tmp_path, fixture_index, "dist-index")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "mirror.yaml", "lockfiles")
    git(tmp_path, "commit", "-q", "-m", "lock", date="2024-01-02T03:04:05Z")
    head = git(tmp_path, "rev-parse", "HEAD").strip()

    def metadata_of_index() -> dict[str, Any]:
        assert main(["index", "--config", str(config)]) == 0
        document = json.loads((tmp_path / "dist-index" / "sbom" / MIRROR_DOCUMENT).read_text())
        return document["metadata"]  # type: ignore[no-any-return]

    def bundled() -> tuple[int, str]:
        result = build_bundle(tmp_path / "dist-index", lockfile_dir=tmp_path / "lockfiles",
                              mirror_yaml=config, out_dir=tmp_path / "dist", name="m",
                              tool=False)
        return result.source_date_epoch, result.epoch_source

    committed = metadata_of_index()
    assert committed["timestamp"].startswith("2024-01-02T03:04:05")
    assert {"name": "lockmirror:mirror.yaml-commit", "value": head} in committed["properties"]
    assert bundled() == (1704164645, "git log (lockfiles)")

    config.write_text(config.read_text() + "# edited, not committed\n")
    lockfile = tmp_path / "lockfiles" / "pylock.core.toml"
    lockfile.write_text(lockfile.read_text() + "# edited, not committed\n")
    edited = metadata_of_index()
    assert "timestamp" not in edited  # no date: not HEAD's
    names = {p["name"]: p["value"] for p in edited["properties"]}
    assert "lockmirror:mirror.yaml-commit" not in names
    assert names["lockmirror:mirror.yaml-modified-since-commit"] == head
    assert bundled() == (0, "none (no SOURCE_DATE_EPOCH, lockfiles have uncommitted changes: "
                            "commit them to date the bundle)")
    assert main(["sbom", "--config", str(config), "-o", str(tmp_path / "sbom")]) == 0
    printed = json.loads((tmp_path / "sbom" / MIRROR_DOCUMENT).read_text())["metadata"]
    assert printed["properties"] == edited["properties"] and "timestamp" not in printed

    # committed again: dated by that commit, mirror.yaml's commit claimed
    git(tmp_path, "commit", "-q", "-am", "edit", date="2024-02-03T04:05:06Z")
    again = metadata_of_index()
    assert {"name": "lockmirror:mirror.yaml-commit",
            "value": git(tmp_path, "rev-parse", "HEAD").strip()} in again["properties"]
    assert bundled() == (1706933106, "git log (lockfiles)")
