"""Where numba keeps the compiled engine: the user's cache folder, one subfolder per source.

numba caches a compiled function keyed by its own file, so a change in a function it inlines
from another module would leave a stale machine-code cache behind; and its default place,
`__pycache__` beside the installed sources, may be read-only or shadow an editable install.
The cache therefore lives in `$NUMBA_CACHE_DIR` (or `~/.cache/pagereplay/numba`), under a
subfolder named by a hash of every module of this package: new sources, new cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

_KEEP = 4  # older source versions' caches kept (several installs may share the folder)


def source_hash() -> str:
    """A short hash of the compiled code's sources: every module of the engine and the trace
    readers (compiled functions and the constants they freeze), and any other module that
    compiles with numba."""
    h = hashlib.blake2b(digest_size=8)
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        text = path.read_bytes()
        if rel.startswith(("engine/", "trace/")) or b"njit" in text:
            h.update(rel.encode())
            h.update(text)
    return h.hexdigest()


def configure() -> Path | None:
    """Point numba's cache at the per-source folder (before numba is imported): under
    $PAGEREPLAY_NUMBA_BASE or $NUMBA_CACHE_DIR, else the user's cache folder, else a temporary
    folder when that is not writable (a read-only home). Never beside the sources: numba's own
    fallback there breaks read-only installs and can shadow an editable one."""
    given = os.environ.get("PAGEREPLAY_NUMBA_BASE") or os.environ.get("NUMBA_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    candidates = [given] if given else []
    candidates += [str(Path(xdg) / "pagereplay" / "numba"),
                   str(Path(tempfile.gettempdir()) / f"pagereplay-numba-{uid}"),
                   f"/dev/shm/pagereplay-numba-{uid}"]
    tag = source_hash()
    for base in candidates:
        folder = Path(base) / tag
        if _writable(folder):
            os.environ["PAGEREPLAY_NUMBA_BASE"] = base  # child processes (dask workers) agree
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            _prune(Path(base), folder)
            _locate_by_package()
            return folder
    return None  # nothing writable: numba compiles in memory each run


def _locate_by_package() -> None:
    """Name each module's cache subfolder by its place in the package, not by the absolute
    path of the sources: the folder is already per source version, so an install in
    site-packages, an editable checkout and a second checkout of the same sources share one
    compiled cache (numba's own locator hashes the absolute path). numba's source stamp is a
    hash of the file's contents, so a fresh `pip install` (new mtimes) keeps the cache valid."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    base = getattr(caching, "UserProvidedCacheLocator", None)
    impl = getattr(caching, "CacheImpl", None)
    if base is None or impl is None or not hasattr(impl, "_locator_classes"):
        return  # another numba: its own locator (per absolute path) still works
    if any(getattr(c, "_pagereplay", False) for c in impl._locator_classes):
        return
    root = Path(__file__).resolve().parent

    class PackageCacheLocator(base):  # type: ignore[misc, valid-type]
        _pagereplay = True

        @classmethod
        def get_suitable_cache_subpath(cls, py_file: str) -> str:
            rel = Path(py_file).resolve().parent.relative_to(root)
            return "_".join(("replay", *rel.parts))

        @classmethod
        def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206 - numba's signature
            try:
                Path(py_file).resolve().relative_to(root)
            except (ValueError, OSError):
                return None  # not ours: numba's other locators decide
            return super().from_function(py_func, py_file)

    impl._locator_classes.insert(0, PackageCacheLocator)


def _writable(folder: Path) -> bool:
    """The folder exists (made if need be) and a file can be written in it (os.access says
    yes to root on a read-only mount)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def _prune(base: Path, keep: Path) -> None:
    """Drop the caches of all but the newest few source versions."""
    try:
        old = sorted((p for p in base.iterdir() if p.is_dir() and p != keep),
                     key=lambda p: p.stat().st_mtime, reverse=True)[_KEEP:]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)  # numba's files sit in subfolders
    except OSError:
        pass
