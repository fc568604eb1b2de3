"""The server side of the HTTP benchmark: a private nginx serving two generated files.

``Nginx(small_bytes, big_bytes)`` is a context manager. It writes, in a fresh temporary folder, a
small file (``/small``), a large one (``/big``) and a configuration, then runs
``/usr/sbin/nginx`` as a child process (``daemon off``, one worker, loopback only, a free port,
keep-alive on with no request limit per connection, no access log, sendfile). ``counters()``
reads nginx's own count of the connections it accepted and the requests it served
(``stub_status``), so a run can tell how many connections a client opened. The folder and the
server are gone when the context ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
TICK = os.sysconf("SC_CLK_TCK")

CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location = /status {{
            stub_status;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_files(www: str, small_bytes: int, big_bytes: int) -> None:
    """``small``: random bytes; ``big``: a 1 MiB random block repeated (fast to write, not compressible)."""
    with open(os.path.join(www, "small"), "wb") as f:
        f.write(os.urandom(small_bytes))
    block = os.urandom(1 << 20)
    with open(os.path.join(www, "big"), "wb") as f:
        left = big_bytes
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def cpu_seconds(pid: int) -> float:
    """User+system time of a running process (``/proc/PID/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return kids


class Nginx:
    """A private nginx on a free loopback port; ``url(name)`` addresses one of its files."""

    def __init__(self, small_bytes: int, big_bytes: int, cpu: int | None = None) -> None:
        self.small_bytes, self.big_bytes, self.cpu = small_bytes, big_bytes, cpu
        self.dir = ""
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.worker = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def path(self, name: str) -> str:
        return os.path.join(self.dir, "www", name)

    def worker_cpu(self) -> float:
        return cpu_seconds(self.worker)

    def __enter__(self) -> Nginx:
        if not os.access(NGINX, os.X_OK):
            raise RuntimeError(f"{NGINX} not found: apt-get install nginx (or set NGINX)")
        self.dir = tempfile.mkdtemp(prefix="coserve-httpbench-")
        try:
            # nginx started as root runs its worker as "nobody", which must read the files.
            os.chmod(self.dir, 0o755)
            os.makedirs(os.path.join(self.dir, "www"))
            os.makedirs(os.path.join(self.dir, "tmp"))
            write_files(os.path.join(self.dir, "www"), self.small_bytes, self.big_bytes)
            for attempt in range(5):
                if self._start():
                    return self
                time.sleep(0.2 * (attempt + 1))  # the port was taken between free_port() and bind
            log = open(os.path.join(self.dir, "error.log")).read()[-2000:]
            raise RuntimeError(f"nginx did not start:\n{log}")
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> bool:
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=self.port))
        cpu = self.cpu
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=pre,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            kids = children(self.proc.pid)
            if len(kids) == 1:
                self.worker = kids[0]
                return True
            time.sleep(0.05)
        self._stop()
        return False

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown, the worker too
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def counters(self) -> tuple[int, int]:
        """nginx's counts of accepted connections and of requests, this probe's own included."""
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.split(b"\r\n\r\n", 1)[1].decode().splitlines()
        accepts, _handled, requests = (int(x) for x in lines[2].split())
        return accepts, requests

    def response_size(self, name: str) -> int:
        """The bytes of one whole response (head and body) to ``GET /name``, as wrk would ask it."""
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(f"GET /{name} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("nginx closed the connection")
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0]
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" ":
                raise RuntimeError(f"nginx answered {status!r}")
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    return len(head) + 4 + int(v)
        raise RuntimeError("nginx sent no Content-Length")
