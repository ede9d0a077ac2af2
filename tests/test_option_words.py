"""Command-line option values are refused in the user's words, not argparse's
(``invalid _positive_int value: 'x'`` named a Python function)."""

from __future__ import annotations

import pytest

from lockmirror.cli import main


@pytest.mark.parametrize("command", ["fetch", "lock", "bump", "publish"])
@pytest.mark.parametrize(("value", "says"), [
    ("x", "'x' is not a positive whole number"),
    ("0", "'0' is not a positive whole number (1 or more)"),
])
def test_jobs_must_be_a_positive_whole_number(command: str, value: str, says: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--jobs", value])
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"argument --jobs{'/-j' if command == 'fetch' else ''}: {says}"), last
    assert "_positive_int" not in last and "int value" not in last
