"""The real-server check's own logic, without a server: `make rathena-check` runs the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rathena.check.client import _overlay
from rathena.check.live import _loaded
from rathena.check.server import CheckFailed, Database, Ports, ServerTree, new_trouble, server_conf

ROOT = Path(__file__).parents[2]


def test_without_rathena_dir_it_says_so_and_fails():
    env = {key: value for key, value in os.environ.items() if key not in ("RATHENA_DIR", "OPENKORE_DIR")}
    done = subprocess.run([sys.executable, "-m", "rathena.check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "RATHENA_DIR is not set" in done.stderr


def test_without_openkore_dir_it_says_how_to_get_it(tmp_path):
    env = {**os.environ, "RATHENA_DIR": str(tmp_path)}
    env.pop("OPENKORE_DIR", None)
    done = subprocess.run([sys.executable, "-m", "rathena.check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "OPENKORE_DIR is not set" in done.stderr and "scons.py" in done.stderr


def test_a_tree_without_servers_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(CheckFailed, match="build rAthena there first"):
        ServerTree(tmp_path, tmp_path / "check")
    openkore = tmp_path / "openkore"
    (openkore / "src" / "auto" / "XSTools").mkdir(parents=True)
    (openkore / "openkore.pl").write_text("")
    env = {**os.environ, "RATHENA_DIR": str(tmp_path), "OPENKORE_DIR": str(openkore)}
    done = subprocess.run([sys.executable, "-m", "rathena.check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "XSTools is not built" in done.stderr
    (openkore / "src" / "auto" / "XSTools" / "XSTools.so").write_text("")
    done = subprocess.run([sys.executable, "-m", "rathena.check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "build rAthena there first" in done.stderr
    assert list(tmp_path.parent.glob("aiworld-rathena-check-*")) == [], "nothing made before the trees are checked"


def test_only_trouble_the_stock_run_lacks_counts():
    stock = [
        "[Warning]: You are running rAthena with root privileges, it is not necessary.",
        "[Warning]: itemdb_parse_roulette_db: Level 3 has 0 items, 7 are required. Filling with Apples...",
        "[Info]: Done loading '13042' NPCs",
    ]
    ours = [
        "[Warning]: You are running rAthena with root privileges, it is not necessary.",
        "[Warning]: itemdb_parse_roulette_db: Level 4 has 0 items, 6 are required. Filling with Apples...",
        "[Error]: script error in file 'aiworld-npc/ai_world.txt' line 12 column 4",
        "    Missing 1 right curlys at file 'aiworld-npc/ai_world.txt', line '300'.",
        "[Error]: buildin_callfunc: Function not found! [AIWorld_RoutineOf]",
        "[Info]: Done loading '13052' NPCs",
    ]
    assert new_trouble(stock, ours) == [
        "[Error]: script error in file 'aiworld-npc/ai_world.txt' line 12 column 4",
        "Missing 1 right curlys at file 'aiworld-npc/ai_world.txt', line '300'.",
        "[Error]: buildin_callfunc: Function not found! [AIWorld_RoutineOf]",
    ]


def test_a_run_that_never_loaded_its_npcs_fails():
    assert "13052" in _loaded(["[Status]: Loading NPCs...", "[Info]: Done loading '13052' NPCs:", "-'3094' Warps"])
    with pytest.raises(CheckFailed, match="never finished loading"):
        _loaded(["[Error]: Couldn't connect with uname='x'"])


def test_the_throw_away_conf_keeps_to_loopback_and_loads_our_scripts():
    conf = server_conf(Database("127.0.0.1", 3306, "u", "p", "db"), Ports(1, 2, 3))
    assert conf["log_conf.txt"] == "log_commands: no\n"
    assert "npc: aiworld-npc/ai_world.txt\nnpc: aiworld-npc/ai_world_npcs.txt\n" in conf["map_conf.txt"]
    for name in ("login_conf.txt", "char_conf.txt", "map_conf.txt"):
        assert "bind_ip: 127.0.0.1\n" in conf[name]
    assert "map_server_db: db\n" in conf["inter_conf.txt"] and "log_db_pw: p\n" in conf["inter_conf.txt"]


def test_an_overlay_replaces_files_and_leaves_the_source_alone(tmp_path):
    source = tmp_path / "tables"
    (source / "kRO").mkdir(parents=True)
    (source / "kRO" / "recvpackets.txt").write_text("0436 19\n")
    (source / "kRO" / "items.txt").write_text("items\n")
    (source / "servers.txt").write_text("[Somewhere]\n")
    _overlay(source, tmp_path / "mine", {"servers.txt": b"[Here]\n", "kRO/recvpackets.txt": b"0436 23\n"})
    assert (tmp_path / "mine" / "servers.txt").read_text() == "[Here]\n"
    assert (tmp_path / "mine" / "kRO" / "recvpackets.txt").read_text() == "0436 23\n"
    assert (tmp_path / "mine" / "kRO" / "items.txt").is_symlink()
    assert (source / "kRO" / "recvpackets.txt").read_text() == "0436 19\n"
    assert (source / "servers.txt").read_text() == "[Somewhere]\n"
