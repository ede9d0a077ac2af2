"""How the resolver explains a conflict: a deep search that ends, and one that
gives up, each naming the conflicting requirements. On a fixture index, hermetic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from test_lock import X86, write_mirror

from lockmirror.config import load_config
from lockmirror.errors import ResolutionError
from lockmirror.resolve.resolver import MAX_ROUNDS
from lockmirror.stages.lock import lock_sets


def web_stack(files: Path) -> None:
    """flask, jinja2 and werkzeug as they are (each wants markupsafe >= 2), and
    requests' dependencies with many releases each: a conflict on markupsafe found
    only after those are pinned."""
    many = {"blinker": 5, "certifi": 8, "charset-normalizer": 8, "click": 8, "idna": 8,
            "itsdangerous": 5, "urllib3": 5}
    for name, count in many.items():
        for minor in range(count):
            build_wheel(files, name, f"2.{minor}")
    build_wheel(files, "requests", "2.31.0", requires_dist=[
        "charset-normalizer>=2", "idna>=2", "urllib3>=2", "certifi>=2"])
    build_wheel(files, "flask", "2.3.3", requires_dist=[
        "Werkzeug>=2.3.7", "Jinja2>=3.1.2", "itsdangerous>=2", "click>=2", "blinker>=2"])
    for patch in range(2, 7):
        build_wheel(files, "jinja2", f"3.1.{patch}", requires_dist=["MarkupSafe>=2.0"])
    for version in ("2.3.7", "2.3.8", "3.0.0", "3.0.1"):
        build_wheel(files, "werkzeug", version, requires_dist=["MarkupSafe>=2.1.1"])
    for version in ("1.1.1", "2.0.0", "2.1.1", "2.1.5"):
        build_wheel(files, "markupsafe", version)


def test_all_pinned_conflict_is_explained_not_given_up(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    web_stack(tmp_path / "files")
    index = make_index(tmp_path / "files")
    sets = (f"  web:\n    targets: [{X86}]\n    requirements:\n"
            "      - requests==2.31.0\n      - flask==2.3.3\n      - markupsafe==1.1.1\n")
    loaded = load_config(write_mirror(tmp_path, index, sets))
    with pytest.raises(ResolutionError) as caught:
        lock_sets(loaded)
    # the ordinary conflict message, as without requests (not "gave up")
    assert str(caught.value) == (
        f"mirror.yaml:18: set 'web', target '{X86}': cannot resolve:\n"
        "conflicting requirements on markupsafe:\n"
        "  markupsafe==1.1.1 (required by the set web)\n"
        "  MarkupSafe>=2.0 <- jinja2 3.1.6, 3.1.5, 3.1.4, 3.1.3, 3.1.2 <- flask 2.3.3 (set web)")


def deep_search(files: Path, count: int) -> None:
    """app 1.0 needs first, second and third (``count`` releases each, newest
    first); every third needs glue, and every glue a base >= 2: with base pinned
    to 1.0, each combination of first and second is tried before the set fails."""
    build_wheel(files, "app", "1.0", requires_dist=["first", "second", "third"])
    for name in ("first", "second"):
        for minor in range(count):
            build_wheel(files, name, f"1.{minor}")
    for minor in range(count):
        build_wheel(files, "third", f"1.{minor}", requires_dist=["glue"])
    build_wheel(files, "glue", "1.0", requires_dist=["base>=2"])
    for version in ("1.0", "2.0"):
        build_wheel(files, "base", version)


@pytest.mark.slow  # resolvelib's full MAX_ROUNDS, on purpose
@pytest.mark.parametrize("app", ["app==1.0", "app"])
def test_a_search_given_up_names_its_last_conflict(
        tmp_path: Path, make_index: Callable[..., FixtureIndex], app: str) -> None:
    deep_search(tmp_path / "files", 30)
    index = make_index(tmp_path / "files")
    sets = (f"  deep:\n    targets: [{X86}]\n    requirements:\n"
            f"      - {app}\n      - base==1.0\n")
    loaded = load_config(write_mirror(tmp_path, index, sets))
    with pytest.raises(ResolutionError) as caught:
        lock_sets(loaded)
    assert str(caught.value).startswith(
        f"mirror.yaml:17: set 'deep', target '{X86}': resolution gave up after "
        f"{MAX_ROUNDS} backtracking rounds; the conflict it met last: "
        "conflicting requirements on base:\n"
        "  base==1.0 (required by the set deep)\n"
        "  base>=2 <- glue 1.0 <- third 1.")
    if app == "app":
        assert str(caught.value).endswith("(set deep) (pin more of the requirements)")
    else:  # pinning more cannot help: the pins conflict
        assert str(caught.value).endswith(
            "(set deep) (every requirement of the set is pinned: the conflict is the likely "
            "cause; change a pin it names)")
