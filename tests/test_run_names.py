"""A run name is one new directory under --storage-path: anything else is one line, exit 2, nothing written."""

from __future__ import annotations

import os

import pytest

from wrn_search.cli import main

BAD_NAMES = ["", "a\x01b", "tab\there", "line\nbreak", "../../escaped", "/tmp/absolute", "a/b", ".hidden",
             "x" * 256, "\u00e9" * 128]


@pytest.mark.parametrize("command", [["run", "quickstart"], ["simulate", "quickstart", "--table", "none.csv"]])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_run_name_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, command, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    assert main([*command, "--name", name, "--storage-path", "deep/er/runs"]) == 2
    message = capsys.readouterr().err
    assert message == (f"wrn-search {command[0]}: error: name: {name!r} is not a valid run name (1 to 255 bytes of "
                       "printable characters, no '/', not starting with '.')\n")
    assert sorted(os.walk(tmp_path)) == [(str(tmp_path), ["deep"], []), (str(tmp_path / "deep"), ["er"], []),
                                         (str(tmp_path / "deep" / "er"), [], [])]
