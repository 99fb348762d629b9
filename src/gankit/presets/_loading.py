"""Loading the user's own preset modules (``--import`` of the CLI and the benchmarks)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import ConfigError

__all__ = ["import_user_module"]


def import_user_module(spec: str) -> ModuleType:
    """Import a module that may register presets: a module name or the path of a ``.py`` file.

    * A path (it ends in ``.py`` or contains a ``/``): that file, or the package whose folder
      it names, is loaded as the module named by its stem (``benchmarks/wgan_gp_b05.py`` ->
      ``wgan_gp_b05``). Its folder is *not* put on ``sys.path``. A stem that another module
      already has (loaded, or importable: a ``csv.py`` would hide the standard library's) is
      refused.
    * A dotted name: a module or package of that name in the current folder comes first, as a
      script's own folder would (only it is loaded from there, the folder is not put on
      ``sys.path`` either), else the installed module of that name.

    A checkpoint of a preset registered this way records ``stem:builder``; pass the same
    ``--import`` again to resume, sample or export it.

    Args:
        spec: ``"mypresets"``, ``"lab.presets"``, ``"benchmarks/wgan_gp_b05.py"`` or a package
            folder.

    Returns:
        The imported module.

    Raises:
        ConfigError: (one line, with the fix) when the name is not a module name, the file
            does not exist, its stem is not a valid module name or is another module's, or
            the import fails with an :class:`ImportError`.

    Example:
        >>> from gankit.presets import import_user_module
        >>> import_user_module("gankit.presets").__name__
        'gankit.presets'
    """
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        return _import_path(spec)
    if not spec or not all(part.isidentifier() for part in spec.split(".")):
        raise ConfigError(f"--import {spec!r} is not a module name; give e.g. --import mypresets "
                          "or the path of a .py file.")
    top = spec.partition(".")[0]
    try:
        if top not in sys.modules:
            _load_file(top, _in_folder(Path.cwd(), top), spec)
        return importlib.import_module(spec)
    except ImportError as err:
        raise ConfigError(f"--import {spec}: {err}; give an importable module name or the path "
                          "of a .py file.") from None


def _in_folder(folder: Path, name: str) -> Path | None:
    """``folder/name/__init__.py`` or ``folder/name.py``, whichever exists (None: neither)."""
    for candidate in (folder / name / "__init__.py", folder / f"{name}.py"):
        if candidate.is_file():
            return candidate
    return None


def _import_path(spec: str) -> ModuleType:
    path = Path(spec).expanduser().resolve()  # absolute: a later chdir does not lose it
    target = path / "__init__.py" if path.is_dir() else path
    if not target.is_file():
        what = "has no __init__.py" if path.is_dir() else "does not exist"
        raise ConfigError(f"--import {spec}: {what}; give the path of a .py file or of a package folder.")
    name = path.name if path.is_dir() else path.stem
    if not name.isidentifier():
        raise ConfigError(f"--import {spec}: {name!r} is not a valid module name; rename the file "
                          "(letters, digits and underscores, not starting with a digit).")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == target.resolve():
            return loaded  # the same file, imported twice
        raise ConfigError(f"--import {spec}: a module named {name!r} is already loaded "
                          f"(from {getattr(loaded, '__file__', None) or 'built-in'}); rename the file.")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is not None and (found.origin is None or Path(found.origin).resolve() != target):
        where = found.origin or ", ".join(found.submodule_search_locations or ()) or "an unknown place"
        raise ConfigError(f"--import {spec}: its name {name!r} is the module at {where}, "
                          "which it would hide; rename the file.")
    try:
        return _load_file(name, target, spec)
    except ImportError as err:
        raise ConfigError(f"--import {spec}: {err}; fix the file's imports.") from None


def _load_file(name: str, target: Path | None, spec: str) -> ModuleType | None:
    """Execute ``target`` as module ``name`` (None: nothing to load here)."""
    if target is None:
        return None
    package = target.name == "__init__.py"
    found = importlib.util.spec_from_file_location(
        name, target, submodule_search_locations=[str(target.parent)] if package else None)
    if found is None or found.loader is None:
        raise ConfigError(f"--import {spec}: {target} cannot be loaded as a module; give a .py file.")
    loaded = importlib.util.module_from_spec(found)
    sys.modules[name] = loaded
    try:
        found.loader.exec_module(loaded)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return loaded
