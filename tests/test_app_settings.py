"""coserve.app._settings: every setting through the command line, the environment and a TOML file."""

from __future__ import annotations

import dataclasses
import json
import os.path
import re

import pytest

import coserve
from coserve.app._settings import (
    DEFAULT_PORT,
    EVENTS,
    SETTINGS,
    Bind,
    Settings,
    SettingsError,
    load_settings,
    make_parser,
    parse_bind,
)

# name: (flag, command-line/environment text, TOML value, the setting's value)
EVERY = {
    "bind": ("--bind", "0.0.0.0:9000", '"0.0.0.0:9000"', (Bind("tcp", "0.0.0.0", 9000),)),
    "backlog": ("--backlog", "128", "128", 128),
    "keep_alive": ("--keep-alive", "2.5", "2.5", 2.5),
    "max_connections": ("--max-connections", "50", "50", 50),
    "max_pipeline": ("--max-pipeline", "8", "8", 8),
    "reuse_port": ("--reuse-port", "true", "true", True),
    "workers": ("--workers", "3", "3", 3),
    "concurrency": ("--concurrency", "thread", '"thread"', "thread"),
    "max_requests": ("--max-requests", "1000", "1000", 1000),
    "max_requests_jitter": ("--max-requests-jitter", "50", "50", 50),
    "timeout": ("--timeout", "5", "5", 5.0),
    "graceful_timeout": ("--graceful-timeout", "7.5", "7.5", 7.5),
    "proxy_protocol": ("--proxy-protocol", "yes", "true", True),
    "forwarded_allow_ips": ("--forwarded-allow-ips", "10.0.0.0/8,::1", '"10.0.0.0/8,::1"', "10.0.0.0/8,::1"),
    "ssl_certfile": ("--certfile", "/etc/cert.pem", '"/etc/cert.pem"', "/etc/cert.pem"),
    "ssl_keyfile": ("--keyfile", "/etc/key.pem", '"/etc/key.pem"', "/etc/key.pem"),
    "ssl_ca_certs": ("--ca-certs", "/etc/ca.pem", '"/etc/ca.pem"', "/etc/ca.pem"),
    "user": ("--user", "www-data", '"www-data"', "www-data"),
    "group": ("--group", "33", "33", 33),
    "pidfile": ("--pid", "/run/app.pid", '"/run/app.pid"', "/run/app.pid"),
    "name": ("--name", "resp", '"resp"', "resp"),
    "control": (
        "--control",
        "unix:/run/ctl.sock",
        '"unix:/run/ctl.sock"',
        Bind("unix", path="/run/ctl.sock"),
    ),
    "log_level": ("--log-level", "DEBUG", '"debug"', "debug"),
    "access_log": ("--access-logfile", "-", '"-"', "-"),
}
# what ssl_keyfile and ssl_ca_certs need to be valid
NEEDS = {"ssl_keyfile": {"ssl_certfile": "/etc/cert.pem"}, "ssl_ca_certs": {"ssl_certfile": "/etc/cert.pem"}}


def test_the_table_lists_every_setting_of_the_issue_and_settings_has_each_one():
    expected = {*EVERY, "config", *EVENTS}
    assert set(SETTINGS) == expected
    fields = {f.name for f in dataclasses.fields(Settings)} - {"_sources"}
    assert fields == expected
    for s in SETTINGS.values():
        assert s.help and s.section
        if s.kind == "event":
            assert s.env is None and not s.flags
        else:
            assert s.env == f"COSERVE_{s.name.upper()}" and s.flags


def test_built_in_defaults():
    s = load_settings([], {})
    assert s.bind == (Bind("tcp", "127.0.0.1", 8060),)
    assert [str(b) for b in s.bind] == ["127.0.0.1:8060"]
    expected = {
        "backlog": 2048,
        "keep_alive": 15.0,
        "workers": 0,
        "concurrency": "process",
        "max_requests": 0,
        "max_requests_jitter": 0,
        "timeout": 30.0,
        "graceful_timeout": 30.0,
        "max_connections": 10000,
        "max_pipeline": 64,
        "reuse_port": False,
        "proxy_protocol": False,
        "forwarded_allow_ips": "127.0.0.1",
        "log_level": "info",
    }
    for name, value in expected.items():
        assert getattr(s, name) == value, name
        assert s.source(name) == "default"
    for name in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "user", "group", "pidfile", "name"):
        assert getattr(s, name) is None
    for name in ("access_log", "control", "config", *EVENTS):
        assert getattr(s, name) is None
    d = s.as_dict()
    assert list(d) == list(SETTINGS) and d["backlog"] == 2048


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_setting_from_the_command_line(name):
    flag, text, _, value = EVERY[name]
    argv = [flag] if SETTINGS[name].kind == "bool" else [flag, text]
    for other, other_value in NEEDS.get(name, {}).items():
        argv += [SETTINGS[other].flags[0], other_value]
    s = load_settings(argv, {})
    assert getattr(s, name) == value
    assert s.source(name) == flag


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_setting_from_the_environment(name):
    _, text, _, value = EVERY[name]
    environ = {f"COSERVE_{name.upper()}": text}
    environ.update({f"COSERVE_{k.upper()}": v for k, v in NEEDS.get(name, {}).items()})
    s = load_settings([], environ)
    assert getattr(s, name) == value
    assert s.source(name) == f"COSERVE_{name.upper()}"


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_setting_from_a_config_file(name, tmp_path):
    _, _, literal, value = EVERY[name]
    lines = [f"{name} = {literal}"] + [f'{k} = "{v}"' for k, v in NEEDS.get(name, {}).items()]
    path = tmp_path / "app.toml"
    path.write_text("\n".join(lines) + "\n")
    s = load_settings(["-c", str(path)], {})
    assert getattr(s, name) == value
    assert s.source(name) == str(path)
    assert s.config == str(path) and s.source("config") == "-c"


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_setting_from_the_applications_defaults(name):
    _, text, _, value = EVERY[name]
    s = load_settings([], {}, defaults={name: text, **NEEDS.get(name, {})})
    assert getattr(s, name) == value
    assert s.source(name) == "defaults"


def test_every_flag_spelling_works():
    for s in SETTINGS.values():
        if s.kind == "event" or s.name not in EVERY:
            continue
        _, text, _, value = EVERY[s.name]
        for flag in s.flags:
            argv = [flag] if s.kind == "bool" else [flag, text]
            for other, other_value in NEEDS.get(s.name, {}).items():
                argv += [SETTINGS[other].flags[0], other_value]
            assert getattr(load_settings(argv, {}), s.name) == value, flag


def test_gunicorn_spellings():
    argv = "-b 0.0.0.0:80 -w 4 -t 10 --worker-connections 9 -u 1000 -g 1000 -p /run/x.pid -n app"
    argv += " --certfile c.pem --keyfile k.pem --ca-certs ca"
    s = load_settings(argv.split(), {})
    assert (s.workers, s.timeout, s.max_connections, s.user, s.group) == (4, 10.0, 9, 1000, 1000)
    assert (s.pidfile, s.name, s.ssl_certfile, s.ssl_keyfile, s.ssl_ca_certs) == (
        "/run/x.pid",
        "app",
        "c.pem",
        "k.pem",
        "ca",
    )


def test_booleans_can_be_turned_off_from_the_command_line():
    environ = {"COSERVE_REUSE_PORT": "on", "COSERVE_PROXY_PROTOCOL": "1"}
    s = load_settings(["--no-reuse-port", "--no-proxy-protocol"], environ)
    assert s.reuse_port is False and s.proxy_protocol is False
    assert s.source("reuse_port") == "--no-reuse-port"
    for word, expected in [("TRUE", True), ("off", False), ("No", False), ("0", False), ("yes", True)]:
        assert load_settings([], {"COSERVE_REUSE_PORT": word}).reuse_port is expected


# -- precedence


def test_precedence_command_line_then_environment_then_file_then_defaults(tmp_path):
    path = tmp_path / "app.toml"
    path.write_text("workers = 3\nbacklog = 30\nkeep_alive = 3\n")
    defaults = {"workers": 4, "backlog": 40, "keep_alive": 4, "max_pipeline": 4}
    environ = {"COSERVE_WORKERS": "2", "COSERVE_BACKLOG": "20", "COSERVE_CONFIG": str(path)}
    s = load_settings(["--workers", "1"], environ, defaults=defaults)
    assert (s.workers, s.source("workers")) == (1, "--workers")
    assert (s.backlog, s.source("backlog")) == (20, "COSERVE_BACKLOG")
    assert (s.keep_alive, s.source("keep_alive")) == (3.0, str(path))
    assert (s.max_pipeline, s.source("max_pipeline")) == (4, "defaults")
    assert (s.max_connections, s.source("max_connections")) == (10000, "default")
    assert (s.config, s.source("config")) == (str(path), "COSERVE_CONFIG")


def test_config_path_from_the_command_line_wins_over_the_environment_and_defaults(tmp_path):
    a, b, c = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    a.write_text("workers = 1\n")
    b.write_text("workers = 2\n")
    c.write_text("workers = 3\n")
    environ = {"COSERVE_CONFIG": str(b)}
    assert load_settings(["--config", str(a)], environ, defaults={"config": str(c)}).workers == 1
    assert load_settings([], environ, defaults={"config": str(c)}).workers == 2
    assert load_settings([], {}, defaults={"config": str(c)}).workers == 3


def test_bind_is_repeatable_and_a_comma_list_and_the_whole_list_is_one_value(tmp_path):
    s = load_settings(["-b", "127.0.0.1:1,unix:/tmp/a.sock", "--bind", "fd://3"], {"COSERVE_BIND": "[::1]:2"})
    assert [str(b) for b in s.bind] == ["127.0.0.1:1", "unix:/tmp/a.sock", "fd://3"]
    s = load_settings([], {"COSERVE_BIND": "[::1]:2, example.com"})
    assert s.bind == (Bind("tcp", "::1", 2), Bind("tcp", "example.com", DEFAULT_PORT))
    path = tmp_path / "app.toml"
    path.write_text('bind = ["10.0.0.1:1", "10.0.0.2:2,10.0.0.3"]\n')
    s = load_settings(["-c", str(path)], {})
    assert [str(b) for b in s.bind] == ["10.0.0.1:1", "10.0.0.2:2", f"10.0.0.3:{DEFAULT_PORT}"]
    s = load_settings([], {}, defaults={"bind": [Bind("unix", path="/tmp/x"), "0.0.0.0:1"]})
    assert [str(b) for b in s.bind] == ["unix:/tmp/x", "0.0.0.0:1"]


def test_environment_empty_values_unset_optional_settings():
    s = load_settings([], {"COSERVE_PIDFILE": "", "COSERVE_CONTROL": "", "COSERVE_USER": ""})
    assert s.pidfile is None and s.control is None and s.user is None
    # other COSERVE_ variables (the kernel's COSERVE_POLLER) are not settings and are left alone
    assert load_settings([], {"COSERVE_POLLER": "selectors"}).workers == 0


def test_every_value_given_is_checked_even_one_overridden():
    with pytest.raises(SettingsError, match="COSERVE_WORKERS"):
        load_settings(["-w", "2"], {"COSERVE_WORKERS": "many"})


# -- bind forms


@pytest.mark.parametrize(
    ("text", "bind", "shown"),
    [
        ("127.0.0.1:8000", Bind("tcp", "127.0.0.1", 8000), "127.0.0.1:8000"),
        ("localhost", Bind("tcp", "localhost", 8060), "localhost:8060"),
        ("example.com:0", Bind("tcp", "example.com", 0), "example.com:0"),
        (":80", Bind("tcp", "0.0.0.0", 80), "0.0.0.0:80"),
        ("[::1]:8000", Bind("tcp", "::1", 8000), "[::1]:8000"),
        ("[::]", Bind("tcp", "::", 8060), "[::]:8060"),
        ("[fe80::1%eth0]:1", Bind("tcp", "fe80::1%eth0", 1), "[fe80::1%eth0]:1"),
        ("unix:/run/app.sock", Bind("unix", path="/run/app.sock"), "unix:/run/app.sock"),
        ("unix:relative.sock", Bind("unix", path="relative.sock"), "unix:relative.sock"),
        ("fd://3", Bind("fd", fd=3), "fd://3"),
        ("  10.0.0.1:65535 ", Bind("tcp", "10.0.0.1", 65535), "10.0.0.1:65535"),
    ],
)
def test_bind_forms(text, bind, shown):
    assert parse_bind(text) == bind
    assert str(bind) == shown
    assert parse_bind(str(bind)) == bind


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("host:99999", "port out of range"),
        ("host:http", "port 'http' is not a number"),
        ("host:", "port '' is not a number"),
        ("::1", "an IPv6 address needs brackets"),
        ("[::1", "missing ']'"),
        ("[::1]8000", "expected ':PORT' after ']'"),
        ("[1.2.3.4]:80", "is not an IPv6 address"),
        ("300.1.1.1:80", "is not an IPv4 address"),
        ("bad_host!:80", "is not a host name or IP address"),
        ("-bad.example:80", "is not a host name or IP address"),
        ("unix:", "unix: needs a path"),
        ("unix:" + "x" * 108, "longer than 107 bytes"),
        ("fd://", "fd:// needs a file descriptor number"),
        ("fd://-1", "fd:// needs a file descriptor number"),
        ("", "empty address"),
    ],
)
def test_bad_binds(text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_bind(text)


# -- invalid values: the message names the setting, the value and where it came from


INVALID = [
    ("bind", "host:99999", "port out of range"),
    ("bind", "1.2.3.4:80,1.2.3.4:80", "1.2.3.4:80 is given twice"),
    ("backlog", "0", "must be at least 1"),
    ("backlog", "lots", "not a whole number"),
    ("keep_alive", "-1", "must be a finite number of seconds, 0 or more"),
    ("keep_alive", "nan", "must be a finite number of seconds, 0 or more"),
    ("keep_alive", "soon", "not a number of seconds"),
    ("max_connections", "0", "must be at least 1"),
    ("max_pipeline", "0", "must be at least 1"),
    ("reuse_port", "maybe", "not a boolean (true/false, yes/no, on/off, 1/0)"),
    ("workers", "-1", "must be at least 0"),
    ("workers", "2.5", "not a whole number"),
    ("concurrency", "fiber", "must be one of process, thread"),
    ("max_requests", "-5", "must be at least 0"),
    ("max_requests_jitter", "x", "not a whole number"),
    ("timeout", "inf", "must be a finite number of seconds, 0 or more"),
    ("graceful_timeout", "-0.5", "must be a finite number of seconds, 0 or more"),
    ("proxy_protocol", "2", "not a boolean (true/false, yes/no, on/off, 1/0)"),
    ("forwarded_allow_ips", "127.0.0.1,lb.example", "'lb.example' is not an IP address or network"),
    ("ssl_certfile", "a\x00b", "cannot hold a NUL byte"),
    ("user", "bad user", "not a user or group name, nor a numeric id"),
    ("group", "-7", "not a user or group name, nor a numeric id"),
    ("control", "/run/ctl.sock", "must be unix:PATH"),
    ("control", "unix:", "unix: needs a path"),
    ("log_level", "verbose", "must be one of debug, info, warning, error, critical"),
]


@pytest.mark.parametrize(("name", "text", "reason"), INVALID)
def test_invalid_values_from_the_environment(name, text, reason):
    var = f"COSERVE_{name.upper()}"
    with pytest.raises(SettingsError) as info:
        load_settings([], {var: text})
    assert str(info.value) == f"{name}: {text!r} from {var}: {reason}"
    assert (info.value.setting, info.value.value, info.value.origin, info.value.reason) == (
        name,
        text,
        var,
        reason,
    )


@pytest.mark.parametrize(("name", "text", "reason"), [c for c in INVALID if SETTINGS[c[0]].kind != "bool"])
def test_invalid_values_from_the_command_line(name, text, reason):
    flag = SETTINGS[name].flags[-1]  # a boolean flag takes no value there
    with pytest.raises(SettingsError) as info:
        load_settings([f"{flag}={text}"], {})
    assert str(info.value) == f"{name}: {text!r} from {flag}: {reason}"


@pytest.mark.parametrize(("name", "text", "reason"), INVALID)
def test_invalid_values_from_a_config_file(name, text, reason, tmp_path):
    path = tmp_path / "app.toml"
    path.write_text(f"{name} = {json.dumps(text)}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(["-c", str(path)], {})
    assert str(info.value) == f"{name}: {text!r} from {path}: {reason}"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("workers = true", "workers: True from {path}: not a whole number (a bool)"),
        ("workers = 2.0", "workers: 2.0 from {path}: not a whole number (a float)"),
        ("keep_alive = false", "keep_alive: False from {path}: not a number of seconds (a bool)"),
        ("reuse_port = 1", "reuse_port: 1 from {path}: not a boolean (a int)"),
        ("bind = 80", "bind: 80 from {path}: not an address or a list of addresses (a int)"),
        ("bind = [80]", "bind: [80] from {path}: an address must be a string (not a int)"),
        ("bind = []", "bind: [] from {path}: no address"),
        ("concurrency = 1", "concurrency: 1 from {path}: not one of process, thread (a int)"),
        ("pidfile = 1", "pidfile: 1 from {path}: not a string (a int)"),
        ("user = -1", "user: -1 from {path}: a numeric id must be 0 or more"),
        (
            "forwarded_allow_ips = 1",
            "forwarded_allow_ips: 1 from {path}: not a comma list of addresses (a int)",
        ),
        ("control = 1", "control: 1 from {path}: not unix:PATH (a int)"),
        ("wokers = 2", "wokers: from {path}: unknown setting (did you mean 'workers'?)"),
        ("zzz = 2", "zzz: from {path}: unknown setting"),
        ('config = "other.toml"', "config: 'other.toml' from {path}: a config file cannot name another one"),
        (
            "[server]\nbind = '1.2.3.4'",
            "server: from {path}: unknown setting (settings are top-level keys, by name)",
        ),
    ],
)
def test_typed_values_and_unknown_keys_in_a_config_file(toml, message, tmp_path):
    path = tmp_path / "app.toml"
    path.write_text(toml + "\n")
    with pytest.raises(SettingsError) as info:
        load_settings(["-c", str(path)], {})
    assert str(info.value) == message.format(path=path)


def test_toml_accepts_lists_for_allow_ips_and_numbers_for_ids(tmp_path):
    path = tmp_path / "app.toml"
    path.write_text('forwarded_allow_ips = ["10.0.0.1", " 10.1.0.0/16"]\nuser = 0\nkeep_alive = 1\n')
    s = load_settings(["-c", str(path)], {})
    assert (s.forwarded_allow_ips, s.user, s.keep_alive) == ("10.0.0.1,10.1.0.0/16", 0, 1.0)


def test_config_file_that_cannot_be_read_or_parsed(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError, match=re.escape(f"config: '{missing}' from -c: cannot read it: ")):
        load_settings(["-c", str(missing)], {})
    with pytest.raises(
        SettingsError, match=re.escape(f"config: '{missing}' from COSERVE_CONFIG: cannot read")
    ):
        load_settings([], {"COSERVE_CONFIG": str(missing)})
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = = 2\n")
    with pytest.raises(SettingsError, match=re.escape(f"config: '{bad}' from -c: not valid TOML: ")):
        load_settings(["-c", str(bad)], {})


def test_unknown_and_invalid_defaults_are_refused():
    with pytest.raises(
        SettingsError, match=re.escape("bakclog: from defaults: unknown setting (did you mean")
    ):
        load_settings([], {}, defaults={"bakclog": 1})
    with pytest.raises(SettingsError, match=re.escape("workers: -2 from defaults: must be at least 0")):
        load_settings([], {}, defaults={"workers": -2})


def test_ssl_key_and_ca_need_a_certificate():
    with pytest.raises(
        SettingsError, match=re.escape("ssl_keyfile: 'k.pem' from --keyfile: set without ssl_certfile")
    ):
        load_settings(["--keyfile", "k.pem"], {})
    with pytest.raises(
        SettingsError,
        match=re.escape("ssl_ca_certs: 'ca.pem' from COSERVE_SSL_CA_CERTS: set without ssl_certfile"),
    ):
        load_settings([], {"COSERVE_SSL_CA_CERTS": "ca.pem"})
    assert (
        load_settings(["--certfile", "both.pem"], {}).ssl_keyfile is None
    )  # the key may be in the chain file


def test_command_line_mistakes_are_settings_errors():
    for argv, message in [
        (["--wrokers", "2"], "unrecognized arguments: --wrokers 2"),
        (["--work", "2"], "unrecognized arguments: --work 2"),  # no abbreviations
        (["extra"], "unrecognized arguments: extra"),
        (["--workers"], "expected one argument"),
        (["--reuse-port=yes"], "ignored explicit argument"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(message)) as info:
            load_settings(argv, {})
        assert str(info.value).startswith("command line: ")
    for event in EVENTS:
        with pytest.raises(SettingsError, match="unrecognized arguments"):
            load_settings([f"--{event.replace('_', '-')}", "json:dumps"], {})


def test_errors_are_coserve_errors_and_value_errors():
    with pytest.raises(coserve.CoserveError):
        load_settings([], {"COSERVE_WORKERS": "x"})
    with pytest.raises(ValueError):
        load_settings([], {"COSERVE_WORKERS": "x"})


def test_argv_and_environ_default_to_the_process(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "-w", "5"])
    monkeypatch.setenv("COSERVE_BACKLOG", "77")
    s = load_settings(None)
    assert (s.workers, s.backlog) == (5, 77)


# -- events


def on_starting(server):
    return server


def test_events_from_defaults_and_a_config_file(tmp_path):
    def made(conn):
        return conn

    path = tmp_path / "app.toml"
    path.write_text(
        'on_exit = "json:dumps"\npost_fork = "os.path:join"\nconnection_made = "json:decoder.JSONDecoder"\n'
    )
    s = load_settings(["-c", str(path)], {}, defaults={"connection_made": made, "on_starting": on_starting})
    assert s.on_exit is json.dumps and s.post_fork is os.path.join
    assert s.connection_made is json.decoder.JSONDecoder and s.source("connection_made") == str(path)
    assert s.on_starting is on_starting and s.source("on_starting") == "defaults"
    assert s.when_ready is None
    s = load_settings([], {}, defaults={"pre_request": f"{__name__}:on_starting"})
    assert s.pre_request is on_starting


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("json", "must be a callable or a 'module:function' string"),
        ("json:", "must be a callable or a 'module:function' string"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz': No module named 'no_such_module_xyz'"),
        ("json:nope", "module 'json' has no 'nope'"),
        ("json:__doc__", "not callable (a str)"),
    ],
)
def test_bad_events(value, reason, tmp_path):
    path = tmp_path / "app.toml"
    path.write_text(f"worker_exit = {json.dumps(value)}\n")
    with pytest.raises(SettingsError) as info:
        load_settings(["-c", str(path)], {})
    assert str(info.value) == f"worker_exit: {value!r} from {path}: {reason}"
    with pytest.raises(SettingsError, match=re.escape("on_exit: 42 from defaults: not callable (a int)")):
        load_settings([], {}, defaults={"on_exit": 42})


# -- help


def test_help_lists_the_settings_by_section_with_their_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(["--help"], {}, prog="coserve serve")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: coserve serve")
    text = " ".join(out.split())
    order = [
        text.index(f"{section}:") for section in ("server", "workers", "proxy", "ssl", "process", "logging")
    ]
    assert order == sorted(order)
    for s in SETTINGS.values():
        if s.kind == "event":
            assert s.name in text
            continue
        for flag in s.flags:
            assert flag in text, flag
        assert s.env in text
    assert "(default: 127.0.0.1:8060; env COSERVE_BIND)" in text
    assert "(default: 2048; env COSERVE_BACKLOG)" in text
    assert "(default: off; env COSERVE_REUSE_PORT)" in text
    assert "--no-reuse-port" in text
    assert make_parser().format_help()


def test_settings_are_frozen():
    s = load_settings([], {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 2  # type: ignore[misc]
    assert dataclasses.replace(s, workers=2).workers == 2
    with pytest.raises(KeyError):
        s.source("nope")
