"""The mutation run's scope (``lockmirror.mutation.SCOPE``) names functions that exist.

A glob that matches nothing makes ``mutmut run`` stop, and one that matches
less than meant quietly shrinks the score's scope; a module move or a renamed
function must show up here, not in the next mutation run.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

from lockmirror import mutation

SRC = Path(mutation.__file__).resolve().parent.parent


def mangled_names(module: str) -> set[str]:
    """mutmut's names for the functions and methods of ``lockmirror.<module>``."""
    tree = ast.parse((SRC / "lockmirror" / (module.replace(".", "/") + ".py")).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(f"lockmirror.{module}.x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            names |= {f"lockmirror.{module}.xǁ{node.name}ǁ{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef)}
    return names


@pytest.mark.parametrize("glob", mutation.SCOPE)
def test_every_glob_names_one_function_that_exists(glob: str) -> None:
    matched = [n for n in mangled_names(mutation.module_of(glob))
               if fnmatch.fnmatchcase(f"{n}__mutmut_1", glob)]
    assert len(matched) == 1, (glob, matched)


def test_scores_count_only_the_scope_per_module() -> None:
    first = mutation.SCOPE[0].replace("*", "")
    results = "\n".join([
        f"    {first}1: killed",
        f"    {first}2: survived",
        f"    {first}3: timeout",
        "    lockmirror.fsutil.x_atomic_write__mutmut_1: survived",  # not in the scope
    ])
    module = mutation.module_of(first)
    scores = mutation.mutation_scores(results)
    assert scores == {module: {"killed": 1, "survived": 1, "timeout": 1}}
    assert mutation.format_mutation_scores(scores) == (
        f"{module}: 67% (2 of 3 checked mutants caught; 1 killed, 1 survived, 1 timeout)\n")


def test_modules_are_chosen_by_full_or_last_name() -> None:
    module = mutation.module_of(mutation.SCOPE[0])
    assert mutation.chosen([module.rsplit(".", 1)[-1]]) == [module]
    assert mutation.chosen([]) == mutation.modules()
    with pytest.raises(mutation.MutationFailed, match="no safety check in module 'store'"):
        mutation.chosen(["store"])


def test_without_mutmut_the_run_fails_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m mutmut` exits 1 when mutmut is missing, which read as "survivors":
    doit mutation passed and wrote an empty score (found by an outside tester)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mutmut" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mutation.MutationFailed, match=r"mutmut is not installed.*\[mutation\]"):
        mutation.run("formats.signing", 1)
    assert not (tmp_path / mutation.MUTATION_SCORE).exists()


def test_doit_mutation_without_mutmut_prints_its_error_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: doit printed "TaskFailed - taskid:mutation" and
    the line again, where every other task prints its error once (README)."""
    import importlib.util

    from lockmirror import doit_tasks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mutmut" else real(name, *a))
    monkeypatch.chdir(SRC.parent)  # lockmirror's repository: the task exists there
    task = doit_tasks.mutation_task()
    assert task is not None
    monkeypatch.chdir(tmp_path)
    failed = task["actions"][0][0]("formats.signing", 1)
    assert failed is not None and not failed.report  # doit adds no report of its own
    assert capsys.readouterr().err.splitlines() == [
        "lockmirror: error: mutmut is not installed in this environment "
        "(pip install -e '.[mutation]')"]


def test_doit_mutation_is_a_task_of_lockmirrors_repository_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `doit mutation` in a mirror repository whose dodo.py
    was copied as the README says answered `pip install -e '.[mutation]'`, which only
    makes sense in lockmirror's own repository."""
    import runpy
    import shutil

    from doit.cmd_base import ModuleTaskLoader  # type: ignore[import-untyped]
    from doit.doit_cmd import DoitMain  # type: ignore[import-untyped]

    def doit(*args: str) -> int:
        dodo = runpy.run_path(str(Path.cwd() / "dodo.py"))
        return int(DoitMain(ModuleTaskLoader(dodo)).run(list(args)))

    monkeypatch.chdir(SRC.parent)
    assert doit("list") == 0
    listed = capsys.readouterr().out
    assert "mutation" in listed and "lockmirror development" in listed
    team = tmp_path / "our-mirror"  # the README's own mirror repository
    team.mkdir()
    for name in ("mirror.yaml", "dodo.py"):
        shutil.copyfile(SRC.parent / name, team / name)
    monkeypatch.chdir(team)
    assert doit("list") == 0
    listed = capsys.readouterr().out
    assert "mutation" not in listed and "check-install" in listed
    assert doit("mutation") != 0
    err = capsys.readouterr().err
    assert "mutation" in err and "pip install" not in err
