"""The public API: every public name documented and typed; the import layers point downward."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import coserve
import coserve.asynchat
import coserve.asyncore
import coserve.compat
import coserve.testing

SRC = pathlib.Path(coserve.__file__).parent


def _public_members(obj):
    for name, member in vars(obj).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(member) or isinstance(member, property):
            yield name, member


@pytest.mark.parametrize(
    "module", [coserve, coserve.testing, coserve.asyncore, coserve.asynchat, coserve.compat]
)
def test_every_public_name_has_a_docstring(module):
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (getattr(obj, "__doc__", None) or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for member_name, member in _public_members(obj):
                doc = member.__doc__ if not isinstance(member, property) else member.fget.__doc__
                if not (doc or "").strip():
                    missing.append(f"{name}.{member_name}")
    assert missing == []


def test_all_is_sorted_and_complete():
    assert list(coserve.__all__) == sorted(coserve.__all__)
    for name in coserve.__all__:
        assert hasattr(coserve, name)


def test_package_is_typed():
    assert (SRC / "py.typed").exists()


def test_core_uses_the_standard_library_only():
    import sys

    for path in SRC.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                assert top in sys.stdlib_module_names or top == "coserve", f"{path.name} imports {n}"


LAYERS = [
    "_errors",
    "_poller",
    "_kernel",
    "_slowtask",
    "_signals",
    "_time",
    "_timer",
    "_sync",
    "_taskgroup",
    "_threads",
    "_socket",
    "_server",
    "_api",
]


def test_layers_import_downward_only():
    for path in SRC.glob("_*.py"):
        mod = path.stem
        if mod not in LAYERS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                # "from ._kernel import x" names the module; "from . import _kernel" lists them.
                targets = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                for target in targets:
                    if target in LAYERS:
                        assert LAYERS.index(target) < LAYERS.index(mod), f"{mod} imports {target} (upward)"


def test_cancelled_is_not_an_exception_and_errors_share_a_root():
    assert not issubclass(coserve.Cancelled, Exception)
    for name in [
        "Destroyed",
        "TooMany",
        "Stopping",
        "AlreadyArmed",
        "NotOwner",
        "ResourceBusy",
        "AlreadyRunning",
        "ForeignAwaitable",
    ]:
        assert issubclass(getattr(coserve, name), coserve.CoserveError)


def test_at_run_end_runs_once_after_the_last_task_and_reports_errors(errors):
    trace = []

    async def main():
        coserve.at_run_end(lambda: trace.append("end"))
        coserve.at_run_end(lambda: 1 / 0)
        coserve.at_run_end(lambda: trace.append("end 2"))
        await coserve.sleep(0)
        trace.append("main done")

    coserve.run(main)
    assert trace == ["main done", "end", "end 2"]
    assert [type(e) for e, _ in errors] == [ZeroDivisionError]
    coserve.run(main)  # a new run starts with no callbacks of the old one
    assert trace == ["main done", "end", "end 2"] * 2
    with pytest.raises(TypeError):
        coserve.at_run_end("not callable")


def _public_callables():
    for module in (coserve, coserve.testing, coserve.asyncore, coserve.asynchat, coserve.compat):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                for member_name, member in vars(obj).items():
                    member = getattr(member, "__func__", member)
                    if inspect.isfunction(member) and (
                        not member_name.startswith("_") or member_name == "__init__"
                    ):
                        yield f"{module.__name__}.{name}.{member_name}", member
            elif callable(obj):
                yield f"{module.__name__}.{name}", obj


def test_no_public_signature_shows_an_anonymous_object_as_a_default():
    checked, bad = 0, []
    for name, obj in _public_callables():
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            continue
        checked += 1
        if "<object object" in sig:
            bad.append(f"{name}{sig}")
    assert checked > 200  # the walk does see the API
    assert bad == [], "give the default a name (coserve._kernel.Sentinel) or a real value"
    assert "timeout: 'float | None' = <its own timeout>" in str(inspect.signature(coserve.Lock.acquire))


def test_help_shows_the_awaitables_as_async():
    import pydoc

    for func, name in [
        (coserve.sleep, "sleep"),
        (coserve.Socket.send, "send"),
        (coserve.Lock.acquire, "acquire"),
    ]:
        assert f"async {name}(" in pydoc.render_doc(func, renderer=pydoc.plaintext)
