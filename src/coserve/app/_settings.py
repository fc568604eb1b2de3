"""TEMP stand-in for the settings module (replaced at merge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Bind:
    kind: str
    host: str | None = None
    port: int = 0
    path: str | None = None
    fd: int | None = None

    def __str__(self) -> str:
        return self.path if self.kind == "unix" else f"{self.host}:{self.port}"


class Settings:
    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def _bind(v: str) -> Bind:
    if v.startswith("unix:"):
        return Bind("unix", path=v[5:])
    h, _, p = v.rpartition(":")
    return Bind("tcp", host=h, port=int(p))


def load_settings(argv: Any, environ: Any = None, *, defaults: Any = None) -> Settings:
    d: dict[str, Any] = dict(
        bind=["127.0.0.1:8060"],
        backlog=2048,
        keep_alive=15,
        workers=0,
        max_connections=10000,
        max_pipeline=64,
        reuse_port=False,
        ssl_certfile=None,
        ssl_keyfile=None,
        ssl_ca_certs=None,
    )
    d.update(defaults or {})
    b = d["bind"]
    d["bind"] = [_bind(x) for x in ([b] if isinstance(b, str) else b)]
    return Settings(d)
