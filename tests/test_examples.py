"""The examples run, and do what their text says."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _run(*args):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=EXAMPLES.parent)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout.splitlines()


def test_demo_serves_its_clients_drops_the_silent_one_and_ends_by_itself():
    lines = _run(sys.executable, "examples/demo.py")
    assert lines[0].startswith("serving on 127.0.0.1:")
    assert any("connections," in line for line in lines)  # the status timer ran
    assert sum("silent for 0.5 s, closing it" in line for line in lines) == 1
    assert lines[-1].startswith("1000 lines answered over 21 connections")


def test_kitchen_serves_every_order_and_ends_by_itself():
    lines = _run(sys.executable, "examples/kitchen.py")
    assert any("supplier took too long" in line for line in lines)
    assert any("status:" in line for line in lines)
    assert lines[-1].endswith("books: 6 dishes: bread, cake, pie, soup, stew, tart")
    bakes = [line for line in lines if " bakes " in line]
    assert len(bakes) == 6 and len({line.split()[1] for line in bakes}) == 3  # three cooks shared the oven


def test_echo_server():
    lines = _run(sys.executable, "examples/echo_server.py")
    assert sorted(lines[:-1]) == sorted(
        ["hello", "from", "hello", "from", "hello", "from", "client 0", "client 1", "client 2"]
    )
    assert lines[-1] == "served 3 connections"


def test_hello_timer_under_the_runtime_command():
    assert _run("coserve", "examples/hello_timer.py") == [f"hello world {n}" for n in range(1, 6)]


def test_foreign_loop():
    lines = _run(sys.executable, "examples/foreign_loop.py")
    assert sorted(lines[:-1]) == ["a round 0", "a round 1", "b round 0", "b round 1", "b round 2"]
    assert lines[-1].startswith("done after")


def test_callbacks():
    assert _run(sys.executable, "examples/callbacks.py") == [
        "callback gave 'COSERVE' (7 letters)",
        f"thread computed {sum(b'COSERVE') % 251}",
    ]


def test_legacy_migration():
    lines = _run(sys.executable, "examples/legacy_migration.py")
    assert sorted(line for line in lines if line.startswith("HELLO")) == [
        "HELLO FROM ADA",
        "HELLO FROM BARBARA",
        "HELLO FROM GRACE",
    ]
    assert any(line.startswith("timer:") for line in lines)
    assert lines[-1] == "loop ended"


def test_chat_keeps_up_with_everyone_but_the_member_that_never_reads():
    lines = _run(sys.executable, "examples/chat.py")
    assert lines.count("server: dropping a member 256 lines behind") == 1
    assert sorted(line for line in lines if " heard " in line) == [
        f"{name} heard all 600 lines" for name in ("alice", "bob", "carol")
    ]
    dropped = [line for line in lines if line.startswith("slowpoke was dropped after ")]
    assert len(dropped) == 1 and int(dropped[0].split()[4]) < 600  # only what fit in the buffers
    assert lines[-1] == "chat over: 4 connections, 0 members left"


@pytest.mark.parametrize("path", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_tested(path):
    tested = {
        "demo.py",
        "kitchen.py",
        "echo_server.py",
        "hello_timer.py",
        "foreign_loop.py",
        "callbacks.py",
        "legacy_migration.py",
        "chat.py",
        "fetch_many.py",  # in tests/test_http_nginx.py, against the nginx peer
        "ftp_roundtrip.py",  # in tests/test_ftp.py, against the pyftpdlib server
        "echo_protocol.py",  # in tests/test_app.py and test_app_command.py
        "resp_server.py",  # in tests/test_app.py and test_app_redis.py (redis-benchmark)
        "send_mail.py",  # in tests/test_smtp_client.py, against the aiosmtpd peer
    }
    assert path in tested, f"examples/{path} has no test in tests/test_examples.py"
