"""One base for every error zfcore raises (``zfcore.errors.ZFCoreError``).

Walks every module of the package and checks each exception class defined there: it derives from
``ZFCoreError`` and still from the built-in exception its callers catch. Private control-flow
signals (a leading underscore, e.g. ``models._StopForward``) are not errors and are exempt.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import zfcore
from zfcore.errors import ZFCoreError

PACKAGE = Path(zfcore.__file__).parent


def _modules():
    names = ["zfcore"] + [m.name for m in pkgutil.walk_packages(zfcore.__path__, "zfcore.")]
    return [importlib.import_module(n) for n in names]


def _exception_classes():
    found = {}
    for mod in _modules():
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == mod.__name__:
                found[f"{mod.__name__}.{name}"] = cls
    return found


def test_base_is_exported_and_on_the_ground_floor():
    assert zfcore.ZFCoreError is ZFCoreError and "ZFCoreError" in zfcore.__all__
    assert issubclass(ZFCoreError, Exception)
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_the_walk_finds_the_known_errors():
    """The check below is only as good as the walk: it must see errors of every floor."""
    found = _exception_classes()
    for name in (
        "zfcore.profiles.ProfileError",
        "zfcore.cache.CacheError",
        "zfcore.models.LayerError",
        "zfcore.data.images.ImageLoadError",
        "zfcore.train.TrainError",
        "zfcore.runner.NotebookFailed",
        "zfcore.widgets.ExplorerError",
    ):
        assert name in found, name
    assert len(found) >= 25


@pytest.mark.parametrize(
    "name", sorted(n for n in _exception_classes() if not n.rsplit(".", 1)[1].startswith("_"))
)
def test_every_public_error_derives_from_the_base(name):
    cls = _exception_classes()[name]
    assert issubclass(cls, ZFCoreError), f"{name} must derive from zfcore.errors.ZFCoreError"
    if cls is not ZFCoreError:
        # it keeps a built-in base too, so `except ValueError` (or the like) still catches it
        builtin = [
            b
            for b in cls.__mro__
            if b.__module__ == "builtins" and b not in (object, BaseException, Exception)
        ]
        assert builtin, f"{name} lost its built-in base (e.g. ValueError)"


def test_a_raised_error_is_caught_by_both_bases():
    from zfcore.profiles import ProfileError, get_profile

    with pytest.raises(ZFCoreError):
        get_profile("no-such-profile")
    with pytest.raises(ValueError):
        get_profile("no-such-profile")
    assert issubclass(ProfileError, ValueError)


#: Built-in exceptions a module may raise directly: the protocol of a module's ``__getattr__``
#: (``AttributeError``), an abstract method, a command line's exit status (``SystemExit``).
ALLOWED_BUILTINS = {"AttributeError", "NotImplementedError", "StopIteration", "SystemExit"}


def _builtin_raises():
    import builtins

    builtin_errors = {
        n
        for n in dir(builtins)
        if isinstance(getattr(builtins, n), type)
        and issubclass(getattr(builtins, n), BaseException)
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in builtin_errors - ALLOWED_BUILTINS:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} raises {exc.id}")
    return found


def test_no_module_raises_a_bare_builtin_error():
    """Every error zfcore raises is one of its own (under ZFCoreError, with the built-in base)."""
    assert _builtin_raises() == []
