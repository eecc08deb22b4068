"""Where zfcore reads and writes: a checkout of the repository, or an installed package.

Inside a checkout (the package's parent folder holds this project's ``pyproject.toml`` or a
``.git``, and is writable) everything stays in the checkout: the cache in ``.cache/``, the figures
of record in ``figures/<profile>/``, executed notebooks and other generated files in ``build/``.
An installed package (site-packages, a read-only checkout) never writes next to itself:

=================  ========================  ==================================================
what               inside a checkout         installed (outside a checkout)
=================  ========================  ==================================================
cache              ``<checkout>/.cache``     ``$XDG_CACHE_HOME/zfcore``, else ``~/.cache/zfcore``
figures of record  ``<checkout>/figures``    ``./figures`` (under the working directory)
build              ``<checkout>/build``      ``<cache>/build``
=================  ========================  ==================================================

``ZFCORE_CACHE``, ``ZFCORE_FIGURES`` and ``ZFCORE_BUILD`` override each of them.

A notebook writes the figures of record only when asked (:func:`figures_output_dir`): when the
runner executes it (``make figures``, ``python -m zfcore.runner``, which set
``ZFCORE_SAVE_FIGURES=1``), when the reader sets ``ZFCORE_SAVE_FIGURES=1`` or ``ZFCORE_FIGURES``,
or when the profile's ``figures_root`` was overridden. Otherwise (a notebook opened in JupyterLab,
the explorer served by Voila) its figures go to ``<build>/figures/<profile>/``, so serving or
browsing never rewrites the committed ones.
"""

from __future__ import annotations

import errno
import functools
import os
import tomllib
from pathlib import Path

from .errors import ZFCoreError

__all__ = [
    "LocationError",
    "package_dir",
    "checkout_root",
    "cache_root",
    "figures_root",
    "build_root",
    "saving_figures",
    "figures_output_dir",
    "writable_dir",
    "SAVE_FIGURES_ENV",
    "download_allowed",
]

#: Set to ``1`` to write the figures of record (the runner sets it for the notebooks it executes).
SAVE_FIGURES_ENV = "ZFCORE_SAVE_FIGURES"


class LocationError(ZFCoreError, OSError):
    """A folder zfcore must write to is read-only or cannot be created; the message names the
    environment variable that points it elsewhere."""


def package_dir() -> Path:
    """The installed ``zfcore`` package folder (read-only as far as zfcore is concerned)."""
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def _is_checkout(root: Path) -> bool:
    if (root / ".git").exists():
        return True
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return project.get("name") == "zfcore"


def checkout_root() -> "Path | None":
    """The writable checkout this package lives in, or ``None`` for an installed package."""
    root = package_dir().parent
    return root if _is_checkout(root) and os.access(root, os.W_OK) else None


def _user_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zfcore"


def _from_env(name: str) -> "Path | None":
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """``$ZFCORE_CACHE``, else ``<checkout>/.cache``, else the user's cache folder."""
    root = checkout_root()
    return _from_env("ZFCORE_CACHE") or (root / ".cache" if root else _user_cache())


def _standard_figures_root() -> Path:
    root = checkout_root()
    return root / "figures" if root else Path.cwd() / "figures"


def figures_root() -> Path:
    """The figures of record: ``$ZFCORE_FIGURES``, else ``<checkout>/figures``, else
    ``./figures``."""
    return _from_env("ZFCORE_FIGURES") or _standard_figures_root()


def build_root() -> Path:
    """Generated files (executed notebooks, the site, draft figures): ``$ZFCORE_BUILD``, else
    ``<checkout>/build``, else ``<cache>/build``."""
    root = checkout_root()
    return _from_env("ZFCORE_BUILD") or (root / "build" if root else cache_root() / "build")


def saving_figures() -> bool:
    """Whether the reader (or the runner) asked for the figures of record: ``ZFCORE_SAVE_FIGURES=1``
    or ``ZFCORE_FIGURES`` set."""
    return (
        os.environ.get(SAVE_FIGURES_ENV, "").strip() == "1"
        or _from_env("ZFCORE_FIGURES") is not None
    )


def figures_output_dir(profile) -> Path:
    """Where a notebook's :class:`zfcore.report.Report` writes on ``profile`` (a
    :class:`zfcore.profiles.Profile`): its ``figures_dir`` when asked (:func:`saving_figures`, or
    a ``figures_root`` other than the standard one), else ``<build>/figures/<profile>/``."""
    if (
        saving_figures()
        or Path(profile.figures_root).resolve() != _standard_figures_root().resolve()
    ):
        return Path(profile.figures_dir)
    return build_root() / "figures" / profile.name


def writable_dir(path: "str | Path", env: str) -> Path:
    """Create ``path`` (and its parents) if needed and check it can be written; a read-only or
    uncreatable folder raises :class:`LocationError` naming ``env``, the variable that moves it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        ok = os.access(path, os.W_OK | os.X_OK)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
            raise
        ok = False
    if not ok:
        raise LocationError(
            errno.EACCES,
            f"cannot write to {path} (read-only or not a folder): "
            f"set {env} to a writable folder, e.g. {env}=$HOME/zfcore-{env.split('_')[-1].lower()}",
        )
    return path


def download_allowed(download: "bool | None" = None) -> bool:
    """Whether zfcore may fetch weights or data: ``download`` when given, else whether the
    environment sets ``ZFCORE_DOWNLOAD`` to ``1``/``true``/``yes`` (tests and CI leave it unset or
    ``0``: nothing is fetched). The one reading of that switch, for weights and data sets alike."""
    if download is not None:
        return bool(download)
    return os.environ.get("ZFCORE_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")
