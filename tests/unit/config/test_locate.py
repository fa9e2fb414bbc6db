"""config/locate.py: the state directory a config names, peeked at before the config is read whole, is the one the
full load gives it; what cannot be told so simply is None (the full load says why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.config.locate import peek_state_dir


@pytest.mark.parametrize("state", ['dir = "state"', 'dir = "../elsewhere/st"', 'dir = "/var/tmp/cr-abs"',
                                   'dir = "~/cr-home"', 'journal = "postgresql://db/cr"', ""])
def test_the_peeked_state_directory_is_the_one_the_full_load_gives(make_fleet, monkeypatch, tmp_path, state):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    fleet = make_fleet(2)
    text = fleet.config_path.read_text()
    head, _, tail = text.partition("[state]")
    rest = tail.split("\n[", 1)
    path = fleet.dir / "peek.toml"
    path.write_text(head + ("[state]\n" + state + "\n" if state else "") + ("\n[" + rest[1] if len(rest) > 1 else ""))
    peeked = peek_state_dir(path)
    assert peeked is not None
    assert peeked == Path(config.load(path).state.dir)


@pytest.mark.parametrize("body", ["[state\n", "[state]\ndir = 7\n", "state = 1\n", b"\xff\xfe [state]"])
def test_what_cannot_be_told_simply_is_none(tmp_path, body):
    path = tmp_path / "controlroom.toml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    assert peek_state_dir(path) is None
    assert peek_state_dir(tmp_path / "missing.toml") is None
