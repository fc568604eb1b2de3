"""Signals: callbacks and receivers run in the loop; SIGINT and SIGTERM shut a run down cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import coserve

SERVER = textwrap.dedent(
    """\
    import sys
    import coserve

    async def handler(sock):
        try:
            await sock.receive()
        finally:
            print("handler cleaned up", flush=True)

    async def client(address):
        sock = await coserve.connect(*address)
        await sock.send(b"")
        print("ready", flush=True)
        try:
            await coserve.sleep_forever()
        finally:
            sock.close()

    server = coserve.serve_tcp(handler, "127.0.0.1", 0)
    coserve.spawn(client, server.address)
    """
)


def _start(tmp_path, *command):
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    proc = subprocess.Popen([*command, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"  # the client connected: the server has a handler running
    return proc


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_coserve_command_shuts_down_cleanly_on_a_signal(tmp_path, signum, status):
    proc = _start(tmp_path, sys.executable, "-m", "coserve")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "handler cleaned up" in out  # the handler's finally block ran
    assert "Traceback" not in err


def test_run_raises_keyboard_interrupt_after_cleaning_up(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(
        SERVER.replace("import coserve\n", "import coserve\nimport atexit\n")
        + textwrap.dedent(
            """\
            try:
                coserve.run()
            except KeyboardInterrupt:
                print("KeyboardInterrupt after the run", flush=True)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines()[-2:] == ["handler cleaned up", "KeyboardInterrupt after the run"]


def test_on_signal_calls_back_from_the_loop_and_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGUSR1)
    got = []

    async def main():
        done = coserve.Event()

        def callback(signum):
            got.append((signum, coserve.current_task()))  # in the loop, not in a task
            done.set()

        remove = coserve.on_signal(signal.SIGUSR1, callback)
        os.kill(os.getpid(), signal.SIGUSR1)
        await done.wait()
        remove()
        return signal.getsignal(signal.SIGUSR1) is not before

    assert coserve.run(main) is True  # replaced during the run...
    assert got == [(signal.SIGUSR1, None)]
    assert signal.getsignal(signal.SIGUSR1) is before  # ...and given back when it ended


def test_a_signal_sent_from_another_thread_wakes_an_idle_loop():
    # The loop sleeps in the poll with nothing else to do; the signal may be handled by the
    # sending thread at the OS level, so only the wake-up fd gets the loop going.
    async def main():
        async with coserve.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as received:
            sender = threading.Thread(
                target=lambda: [os.kill(os.getpid(), s) for s in (signal.SIGUSR2, signal.SIGUSR1)]
            )
            sender.start()
            got = []
            async for signum in received:
                got.append(signum)
                if len(got) == 2:
                    break
        await coserve.run_in_thread(sender.join)
        return got

    assert sorted(coserve.run(main)) == [signal.SIGUSR1, signal.SIGUSR2]  # the OS picks the order


def test_a_failing_callback_is_reported_and_the_loop_goes_on(errors):
    async def main():
        done = coserve.Event()

        def bad(signum):
            raise RuntimeError("callback failed")

        coserve.on_signal(signal.SIGUSR1, bad)
        coserve.on_signal(signal.SIGUSR1, lambda signum: done.set())
        os.kill(os.getpid(), signal.SIGUSR1)
        await done.wait()

    coserve.run(main)
    assert [str(e) for e, _ in errors] == ["callback failed"]


def test_bad_signals_are_refused():
    async def main():
        with pytest.raises(ValueError, match="cannot be caught"):
            coserve.on_signal(signal.SIGKILL, print)
        with pytest.raises(TypeError, match="signal is a number"):
            coserve.on_signal("SIGINT", print)
        with pytest.raises(ValueError, match="not a signal"):
            coserve.on_signal(100_000, print)
        with pytest.raises(TypeError, match="callable"):
            coserve.on_signal(signal.SIGUSR1, None)
        with pytest.raises(TypeError, match="at least one"):
            coserve.open_signal_receiver()

    coserve.run(main)


def test_signals_need_the_main_thread():
    failures = []

    def in_a_thread():
        async def main():
            with pytest.raises(coserve.CoserveError, match="main thread"):
                coserve.on_signal(signal.SIGUSR1, print)
            return True

        failures.append(coserve.run(main))

    t = threading.Thread(target=in_a_thread)
    t.start()
    t.join()
    assert failures == [True]
