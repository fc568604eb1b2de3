"""The settings of a coserve application: one declarative table, four sources.

Every setting in :data:`SETTINGS` has a default, a command-line flag (gunicorn's
spelling where gunicorn has the setting), an environment variable
``COSERVE_<NAME>`` and a key of the TOML config file (its name). The events are
settings too, given only by the application's defaults or the config file
(there as ``"module:function"`` strings). :func:`load_settings` reads them all;
the command line wins over the environment, which wins over the config file
(``-c FILE`` or ``COSERVE_CONFIG``), which wins over the application's own
defaults, which win over the built-in ones. A value that is not valid is
refused with a :class:`SettingsError` that names the setting and where the
value came from.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import ipaddress
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import CoserveError
from ._proxy import parse_allow_ips

__all__ = [
    "DEFAULT_PORT",
    "EVENTS",
    "SETTINGS",
    "Bind",
    "Setting",
    "Settings",
    "SettingsError",
    "load_settings",
    "make_parser",
    "parse_bind",
]

#: The port of a ``bind`` given as a bare host.
DEFAULT_PORT = 8060

#: The events an application can hook, in the order the issue lists them.
EVENTS = (
    "connection_made",
    "pre_request",
    "post_request",
    "connection_lost",
    "on_starting",
    "when_ready",
    "post_fork",
    "worker_exit",
    "on_exit",
)


class SettingsError(CoserveError, ValueError):
    """A setting's value is not valid, or a setting is unknown.

    The message names the setting, the value and where it came from, e.g.
    ``bind: 'host:99999' from COSERVE_BIND: port out of range``. The parts are
    kept as ``setting``, ``value``, ``origin`` and ``reason``.
    """

    def __init__(self, setting: str, value: object, origin: str, reason: str) -> None:
        self.setting = setting
        self.value = value
        self.origin = origin
        self.reason = reason
        shown = f" {value!r}" if value is not _NO_VALUE else ""
        where = f" from {origin}" if origin else ""
        super().__init__(f"{setting}:{shown}{where}: {reason}" if shown or where else f"{setting}: {reason}")


_NO_VALUE: Any = object()


class _Invalid(Exception):
    """A converter's refusal; load_settings turns it into a SettingsError with the setting and origin."""


@dataclass(frozen=True, slots=True)
class Bind:
    """One address to listen on, parsed from ``bind``.

    ``kind`` is ``"tcp"`` (``host`` and ``port``; an IPv6 host is kept without
    its brackets), ``"unix"`` (``path``) or ``"fd"`` (``fd``: a socket already
    open and inherited, e.g. from systemd). ``str()`` gives it back in the form
    ``bind`` accepts.
    """

    kind: Literal["tcp", "unix", "fd"]
    host: str | None = None
    port: int | None = None
    path: str | None = None
    fd: int | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_bind(text: str) -> Bind:
    """Parse one ``bind`` address: ``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``.

    A bare host listens on :data:`DEFAULT_PORT`; ``:PORT`` on every IPv4
    interface. Raises :class:`ValueError` saying what is wrong.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError("unix: needs a path")
        if "\x00" in path:
            raise ValueError("a unix socket path cannot hold a NUL byte")
        if len(os.fsencode(path)) > 107:
            raise ValueError("unix socket path longer than 107 bytes")
        return Bind("unix", path=path)
    if text.startswith("fd://"):
        num = text[5:]
        if not (num.isascii() and num.isdigit()):
            raise ValueError("fd:// needs a file descriptor number")
        return Bind("fd", fd=int(num))
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':PORT' after ']'")
        return Bind("tcp", host=host, port=_port(rest[1:]) if rest else DEFAULT_PORT)
    if text.count(":") > 1:
        raise ValueError("an IPv6 address needs brackets: [ADDRESS]:PORT")
    host, sep, port_text = text.partition(":")
    port = _port(port_text) if sep else DEFAULT_PORT
    if not host:
        return Bind("tcp", host="0.0.0.0", port=port)
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    elif len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in host.rstrip(".").split(".")):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return Bind("tcp", host=host, port=port)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ValueError("port out of range")
    return port


# -- converters: each turns a value from the command line, the environment (text) or a
# -- config file or the application's defaults (typed, or text) into the setting's value.


def _text_int(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise _Invalid("not a whole number")
            value = int(text)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"not a whole number (a {type(value).__name__})")
        if value < minimum:
            raise _Invalid(f"must be at least {minimum}")
        return value

    return convert


def _seconds(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Invalid("not a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"not a number of seconds (a {type(value).__name__})")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise _Invalid("must be a finite number of seconds, 0 or more")
    return seconds


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: object) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid("not a boolean (true/false, yes/no, on/off, 1/0)")
    if not isinstance(value, bool):
        raise _Invalid(f"not a boolean (a {type(value).__name__})")
    return value


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"not one of {', '.join(choices)} (a {type(value).__name__})")
        word = value.strip().lower()
        if word not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}")
        return word

    return convert


def _optional_text(value: object) -> str | None:
    # An empty string (an empty environment variable) leaves the setting unset.
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"not a string (a {type(value).__name__})")
    if "\x00" in value:
        raise _Invalid("cannot hold a NUL byte")
    return value or None


def _user(value: object) -> str | int | None:
    # A name or a numeric id; names are looked up when privileges are dropped, not here.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _Invalid("a numeric id must be 0 or more")
        return value
    text = _optional_text(value)
    if text is None:
        return None
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*\$?", text):
        raise _Invalid("not a user or group name, nor a numeric id")
    return text


def _binds(value: object) -> tuple[Bind, ...]:
    items: list[object]
    if isinstance(value, str | Bind):
        items = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _Invalid(f"not an address or a list of addresses (a {type(value).__name__})")
    binds: list[Bind] = []
    for item in items:
        if isinstance(item, Bind):
            parsed = [item]
        elif isinstance(item, str):
            try:
                parsed = [parse_bind(part) for part in item.split(",")]
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
        else:
            raise _Invalid(f"an address must be a string (not a {type(item).__name__})")
        for bind in parsed:
            if bind in binds:
                raise _Invalid(f"{bind} is given twice")
            binds.append(bind)
    if not binds:
        raise _Invalid("no address")
    return tuple(binds)


def _allow_ips(value: object) -> str:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise _Invalid(f"not a comma list of addresses (a {type(value).__name__})")
    try:
        parse_allow_ips(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return ",".join(part.strip() for part in value.split(",") if part.strip())


def _control(value: object) -> Bind | None:
    if value is None or (isinstance(value, Bind) and value.kind == "unix"):
        return value
    if not isinstance(value, str):
        raise _Invalid(f"not unix:PATH (a {type(value).__name__})")
    if not value.strip():
        return None
    if not value.strip().startswith("unix:"):
        raise _Invalid("must be unix:PATH")
    try:
        return parse_bind(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _hook(value: object) -> Callable[..., Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        module_name, sep, attr = value.strip().partition(":")
        if not sep or not module_name or not attr:
            raise _Invalid("must be a callable or a 'module:function' string")
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise _Invalid(f"cannot import {module_name!r}: {exc}") from None
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise _Invalid(f"module {module_name!r} has no {attr!r}") from None
        value = target
    if not callable(value):
        raise _Invalid(f"not callable (a {type(value).__name__})")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table.

    ``convert`` turns a value from any source into the setting's value (text from
    the command line and the environment, typed or text from the config file and
    the defaults), raising on a value that is not valid. ``flags`` are the
    command-line spellings (none for the events); ``kind`` is ``"value"``,
    ``"bool"`` (``--flag`` and ``--no-flag``), ``"append"`` (repeatable) or
    ``"event"`` (config file and defaults only).
    """

    name: str
    section: str
    default: Any
    convert: Callable[[object], Any]
    help: str
    flags: tuple[str, ...] = ()
    kind: Literal["value", "bool", "append", "event"] = "value"
    metavar: str | None = None

    @property
    def env(self) -> str | None:
        """The environment variable, ``COSERVE_<NAME>`` (None for the events)."""
        return None if self.kind == "event" else f"COSERVE_{self.name.upper()}"

    @property
    def default_text(self) -> str:
        """The default as ``--help`` shows it."""
        default = self.default
        if isinstance(default, tuple):
            return ",".join(str(item) for item in default)
        if isinstance(default, bool):
            return "on" if default else "off"
        if default is None:
            return "none"
        return str(default)


_SETTINGS: list[Setting] = [
    # server
    Setting(
        "bind",
        "server",
        (Bind("tcp", "127.0.0.1", DEFAULT_PORT),),
        _binds,
        "address to listen on: HOST, HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeat it or give a "
        "comma list",
        ("-b", "--bind"),
        "append",
        "ADDRESS",
    ),
    Setting(
        "backlog", "server", 2048, _text_int(1), "length of the listen queue", ("--backlog",), metavar="INT"
    ),
    Setting(
        "keep_alive",
        "server",
        15.0,
        _seconds,
        "seconds a connection may be idle before it is closed",
        ("--keep-alive",),
        metavar="SECONDS",
    ),
    Setting(
        "max_connections",
        "server",
        10000,
        _text_int(1),
        "most connections one worker serves at once (more wait in the listen queue)",
        ("--max-connections", "--worker-connections"),
        metavar="INT",
    ),
    Setting(
        "max_pipeline",
        "server",
        64,
        _text_int(1),
        "most responses pending on one connection before reading from it stops",
        ("--max-pipeline",),
        metavar="INT",
    ),
    Setting(
        "reuse_port",
        "server",
        False,
        _bool,
        "each worker binds its own socket (SO_REUSEPORT) and the kernel balances them",
        ("--reuse-port",),
        "bool",
    ),
    # workers
    Setting(
        "workers",
        "workers",
        0,
        _text_int(0),
        "worker processes; 0 serves in the arbiter's own process",
        ("-w", "--workers"),
        metavar="INT",
    ),
    Setting(
        "concurrency",
        "workers",
        "process",
        _choice("process", "thread"),
        "how workers run: process or thread",
        ("--concurrency",),
        metavar="{process,thread}",
    ),
    Setting(
        "max_requests",
        "workers",
        0,
        _text_int(0),
        "a worker restarts after that many requests; 0 never",
        ("--max-requests",),
        metavar="INT",
    ),
    Setting(
        "max_requests_jitter",
        "workers",
        0,
        _text_int(0),
        "a random 0..N added to max_requests per worker, so they do not restart together",
        ("--max-requests-jitter",),
        metavar="INT",
    ),
    Setting(
        "timeout",
        "workers",
        30.0,
        _seconds,
        "a worker silent that long is killed and replaced; 0 never",
        ("-t", "--timeout"),
        metavar="SECONDS",
    ),
    Setting(
        "graceful_timeout",
        "workers",
        30.0,
        _seconds,
        "seconds in-flight requests get to finish at a graceful stop",
        ("--graceful-timeout",),
        metavar="SECONDS",
    ),
    # proxy
    Setting(
        "proxy_protocol",
        "proxy",
        False,
        _bool,
        "read HAProxy's PROXY protocol header (v1 or v2) first on each connection",
        ("--proxy-protocol",),
        "bool",
    ),
    Setting(
        "forwarded_allow_ips",
        "proxy",
        "127.0.0.1",
        _allow_ips,
        "peers trusted to send a PROXY header: comma list of IPs and CIDR networks, or *",
        ("--forwarded-allow-ips",),
        metavar="IPS",
    ),
    # ssl
    Setting(
        "ssl_certfile",
        "ssl",
        None,
        _optional_text,
        "TLS certificate chain (PEM); TLS is on when set",
        ("--certfile", "--ssl-certfile"),
        metavar="FILE",
    ),
    Setting(
        "ssl_keyfile",
        "ssl",
        None,
        _optional_text,
        "TLS private key (PEM), if not in the certificate file",
        ("--keyfile", "--ssl-keyfile"),
        metavar="FILE",
    ),
    Setting(
        "ssl_ca_certs",
        "ssl",
        None,
        _optional_text,
        "CA certificates (PEM) to verify client certificates",
        ("--ca-certs", "--ssl-ca-certs"),
        metavar="FILE",
    ),
    # process
    Setting(
        "user",
        "process",
        None,
        _user,
        "switch to this user (name or uid) after binding",
        ("-u", "--user"),
        metavar="USER",
    ),
    Setting(
        "group",
        "process",
        None,
        _user,
        "switch to this group (name or gid) after binding",
        ("-g", "--group"),
        metavar="GROUP",
    ),
    Setting(
        "pidfile",
        "process",
        None,
        _optional_text,
        "write the arbiter's pid to this file",
        ("-p", "--pid", "--pidfile"),
        metavar="FILE",
    ),
    Setting(
        "name",
        "process",
        None,
        _optional_text,
        "process title prefix (when setproctitle is installed)",
        ("-n", "--name"),
        metavar="NAME",
    ),
    Setting(
        "control",
        "process",
        None,
        _control,
        "control socket of the running arbiter: unix:PATH",
        ("--control",),
        metavar="unix:PATH",
    ),
    # logging
    Setting(
        "log_level",
        "logging",
        "info",
        _choice("debug", "info", "warning", "error", "critical"),
        "least severe messages logged: debug, info, warning, error or critical",
        ("--log-level",),
        metavar="LEVEL",
    ),
    Setting(
        "access_log",
        "logging",
        None,
        _optional_text,
        "file to log each request to; - for stdout",
        ("--access-logfile", "--access-log"),
        metavar="FILE",
    ),
    # config
    Setting(
        "config",
        "config",
        None,
        _optional_text,
        "TOML file of settings (keys are the setting names)",
        ("-c", "--config"),
        metavar="FILE",
    ),
]
_SETTINGS += [
    Setting(
        event, "events", None, _hook, f"the {event} event: a callable, or 'module:function'", kind="event"
    )
    for event in EVENTS
]

#: Every setting by name, in the order ``--help`` lists them.
SETTINGS: Mapping[str, Setting] = {s.name: s for s in _SETTINGS}

_SECTIONS = {
    "server": "listening and connections",
    "workers": "workers and their supervision",
    "proxy": "behind a load balancer",
    "ssl": "TLS",
    "process": "the arbiter's process",
    "logging": "logging",
    "config": "configuration",
}

_Hook = Callable[..., Any] | None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The settings of one application, each one an attribute (see :data:`SETTINGS`).

    Made by :func:`load_settings`; ``source(name)`` tells where a value came
    from and ``as_dict()`` gives them all by name.
    """

    bind: tuple[Bind, ...]
    backlog: int
    keep_alive: float
    max_connections: int
    max_pipeline: int
    reuse_port: bool
    workers: int
    concurrency: Literal["process", "thread"]
    max_requests: int
    max_requests_jitter: int
    timeout: float
    graceful_timeout: float
    proxy_protocol: bool
    forwarded_allow_ips: str
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_ca_certs: str | None
    user: str | int | None
    group: str | int | None
    pidfile: str | None
    name: str | None
    control: Bind | None
    log_level: Literal["debug", "info", "warning", "error", "critical"]
    access_log: str | None
    config: str | None
    connection_made: _Hook
    pre_request: _Hook
    post_request: _Hook
    connection_lost: _Hook
    on_starting: _Hook
    when_ready: _Hook
    post_fork: _Hook
    worker_exit: _Hook
    on_exit: _Hook
    _sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Every setting's value by name, in the table's order."""
        return {name: getattr(self, name) for name in SETTINGS}

    def source(self, name: str) -> str:
        """Where ``name``'s value came from: a flag, ``COSERVE_<NAME>``, a config file, defaults, default."""
        if name not in SETTINGS:
            raise KeyError(name)
        return self._sources.get(name, "default")


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is a SettingsError, not an exit."""

    def error(self, message: str) -> Any:
        raise SettingsError("command line", _NO_VALUE, "", message)


class _Record(argparse.Action):
    """Keep the raw value with the flag it came under: (flag, text), or a list of them for append."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        flag = option_string or self.dest
        if self.nargs == 0:  # a boolean: --name or --no-name
            values = "false" if flag.startswith("--no-") else "true"
        entry = (flag, values)
        if self.const == "append":
            items = list(getattr(namespace, self.dest, None) or [])
            items.append(entry)
            setattr(namespace, self.dest, items)
        else:
            setattr(namespace, self.dest, entry)


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser: every setting's flags, grouped by section, with its default in ``--help``.

    Flags not given are absent from the parsed namespace; the values are kept as
    ``(flag, text)`` for :func:`load_settings` to convert.
    """
    events = ", ".join(EVENTS)
    parser = _Parser(
        prog=prog,
        allow_abbrev=False,
        description="Serve a coserve application. Each setting also reads COSERVE_<NAME> from the "
        "environment and NAME from the config file; the command line wins, then the environment, "
        "then the file, then the application's defaults.",
        epilog=f"Events ({events}) are set in the config file as 'module:function' or by the application.",
    )
    groups = {key: parser.add_argument_group(f"{key}: {title}") for key, title in _SECTIONS.items()}
    for s in _SETTINGS:
        if s.kind == "event":
            continue
        help_text = f"{s.help} (default: {s.default_text}; env {s.env})".replace("%", "%%")
        group = groups[s.section]
        if s.kind == "bool":
            long = s.flags[-1]
            flags = (*s.flags, "--no-" + long[2:])
            group.add_argument(
                *flags, dest=s.name, nargs=0, action=_Record, default=argparse.SUPPRESS, help=help_text
            )
        else:
            group.add_argument(
                *s.flags,
                dest=s.name,
                action=_Record,
                default=argparse.SUPPRESS,
                const="append" if s.kind == "append" else None,
                metavar=s.metavar,
                help=help_text,
            )
    return parser


def _convert(setting: Setting, value: object, origin: str) -> Any:
    try:
        return setting.convert(value)
    except _Invalid as exc:
        raise SettingsError(setting.name, value, origin, str(exc)) from None


def _unknown(name: str, origin: str, value: object = None) -> SettingsError:
    close = difflib.get_close_matches(name, list(SETTINGS), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if isinstance(value, dict):  # a TOML table: the file is flat
        hint = " (settings are top-level keys, by name)"
    return SettingsError(name, _NO_VALUE, origin, f"unknown setting{hint}")


def _read_config(path: str, origin: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SettingsError("config", path, origin, f"cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("config", path, origin, f"not valid TOML: {exc}") from None


def load_settings(
    argv: list[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    prog: str | None = None,
) -> Settings:
    """Read the settings from the command line, the environment, a config file and the application's defaults.

    ``argv`` is the command line without the program's name (None: ``sys.argv[1:]``);
    ``environ`` the environment (None: ``os.environ``); ``defaults`` the
    application's own values (e.g. ``SocketServer(**settings)``), by setting
    name. For each setting the first source that has it wins: command line,
    environment, config file (``-c``/``--config``, else ``COSERVE_CONFIG``,
    else a ``config`` in ``defaults``), ``defaults``, the built-in default.
    Every value given is checked, even one that a stronger source overrides.
    Raises :class:`SettingsError` for a value that is not valid, an unknown
    key in the config file or ``defaults``, or a mistake on the command line;
    ``--help`` prints the settings by section and exits (``SystemExit(0)``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    namespace = make_parser(prog).parse_args(args)

    layers: list[dict[str, tuple[Any, str]]] = []  # strongest first: name -> (value, origin)
    cli: dict[str, tuple[Any, str]] = {}
    for name, entry in vars(namespace).items():
        setting = SETTINGS[name]
        if setting.kind == "append":
            converted = [_convert(setting, text, flag) for flag, text in entry]
            merged: list[Bind] = []
            for value in converted:
                merged.extend(value)
            cli[name] = (_convert(setting, merged, entry[0][0]), entry[0][0])
        else:
            flag, text = entry
            cli[name] = (_convert(setting, text, flag), flag)
    layers.append(cli)

    environment: dict[str, tuple[Any, str]] = {}
    for setting in _SETTINGS:
        var = setting.env
        if var is not None and var in env:
            environment[setting.name] = (_convert(setting, env[var], var), var)
    layers.append(environment)

    app: dict[str, tuple[Any, str]] = {}
    for name, value in (defaults or {}).items():
        if name not in SETTINGS:
            raise _unknown(name, "defaults")
        app[name] = (_convert(SETTINGS[name], value, "defaults"), "defaults")

    file_layer: dict[str, tuple[Any, str]] = {}
    config_entry = cli.get("config") or environment.get("config") or app.get("config")
    if config_entry is not None and config_entry[0] is not None:
        path, origin = config_entry
        data = _read_config(path, origin)
        for key, value in data.items():
            if key not in SETTINGS:
                raise _unknown(key, path, value)
            if key == "config":
                raise SettingsError(key, value, path, "a config file cannot name another one")
            file_layer[key] = (_convert(SETTINGS[key], value, path), path)
    layers += [file_layer, app]

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in _SETTINGS:
        for layer in layers:
            if setting.name in layer:
                values[setting.name], sources[setting.name] = layer[setting.name]
                break
        else:
            values[setting.name] = setting.default

    def where(name: str) -> str:
        return sources.get(name, "default")

    if values["ssl_keyfile"] and not values["ssl_certfile"]:
        raise SettingsError(
            "ssl_keyfile", values["ssl_keyfile"], where("ssl_keyfile"), "set without ssl_certfile"
        )
    if values["ssl_ca_certs"] and not values["ssl_certfile"]:
        raise SettingsError(
            "ssl_ca_certs", values["ssl_ca_certs"], where("ssl_ca_certs"), "set without ssl_certfile"
        )
    return Settings(**values, _sources=sources)
