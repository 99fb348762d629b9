"""Recipe files: every setting of a preset in a commented TOML file, and reading one back.

``gankit config PRESET [--set KEY=VALUE ...] > run.toml`` writes one; ``gankit train
--config run.toml [--set ...]`` trains with it. Precedence: the preset's own values <
the file < options given on the command line. The file names its preset and holds a
``[settings]`` table with one line per field of :class:`~gankit.presets.RecipeSettings`
(generated from the dataclass, so new settings appear by themselves); ``"none"`` stands
for None (TOML has no null).

Example:
    >>> text = recipe_toml("dcgan_task1", {"batch_size": 32})
    >>> parse_recipe_toml(text, "run.toml")
    ('dcgan_task1', {'batch_size': 32})
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["recipe_toml", "parse_recipe_toml", "read_recipe_file", "preset_settings"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def preset_settings(preset: str, overrides: dict[str, Any] | None = None):
    """The :class:`~gankit.presets.RecipeSettings` of a preset with overrides, without real networks.

    The networks are built on the ``meta`` device and torch's global RNG is left as it was.

    Args:
        preset: a registered preset name or a ``module:function`` builder.
        overrides: settings replacing the preset's.

    Returns:
        The settings.
    """
    import torch

    from .presets import recipe_from_name

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return recipe_from_name(preset, **(overrides or {})).settings


def _field_docs() -> dict[str, str]:
    """``name -> first sentence of its description`` from RecipeSettings' docstring."""
    from .presets import RecipeSettings

    doc = inspect.cleandoc(RecipeSettings.__doc__ or "")
    docs: dict[str, str] = {}
    current = None
    for line in doc.split("Args:", 1)[-1].splitlines():
        m = re.match(r"^ {4}(\w+):\s*(.*)$", line)
        if m:
            current = m[1]
            docs[current] = m[2].strip()
        elif current and line.strip() and line.startswith(" " * 8):
            docs[current] += " " + line.strip()
        elif current and not line.strip():
            current = None
    return {k: re.sub(r"``([^`]*)``", r"\1", v) for k, v in docs.items()}


def _hints() -> dict[str, Any]:
    """The type of every field of RecipeSettings, in declaration order."""
    from .presets import RecipeSettings

    hints = typing.get_type_hints(RecipeSettings)
    return {name: hints[name] for name in RecipeSettings.field_names()}


def _union_args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _type_name(hint: Any) -> str:
    args = _union_args(hint)
    return " or ".join("none" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    return json.dumps(str(value))


def recipe_toml(preset: str, overrides: dict[str, Any] | None = None) -> str:
    """The recipe file of a preset with overrides: every setting, commented, with its value.

    Args:
        preset: a registered preset name or a ``module:function`` builder.
        overrides: settings replacing the preset's.

    Returns:
        The TOML text.
    """
    from ._version import __version__

    overrides = dict(overrides or {})
    settings = dataclasses.asdict(preset_settings(preset, overrides))
    defaults = dataclasses.asdict(preset_settings(preset)) if overrides else settings
    docs, hints = _field_docs(), _hints()
    lines = [
        f"# gankit recipe file: every setting of {preset} (gankit {__version__}).",
        "# Train with: gankit train --config FILE [--set KEY=VALUE ...]",
        "# Precedence: the preset values < this file < options on the command line.",
        '# "none" stands for None. Lines may be removed: a missing setting keeps the preset value.',
        f"preset = {json.dumps(preset)}",
        "",
        "[settings]",
    ]
    for name, value in settings.items():
        doc = docs.get(name, "")
        note = f"  (preset: {_toml_value(defaults[name])})" if defaults[name] != value else ""
        lines.append(f"# {name} ({_type_name(hints[name])}): {doc}{note}".rstrip())
        lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    args = _union_args(hint)
    if isinstance(value, str) and value.strip().lower() in ("none", "null") and type(None) in args:
        return None
    for typ in (a for a in args if a is not type(None)):
        if typ is bool and isinstance(value, bool):
            return value
        if typ is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if typ is str and isinstance(value, str):
            return value
        if typing.get_origin(typ) in (tuple, list) and isinstance(value, list):
            return typing.get_origin(typ)(value)
    raise ConfigError(f"{where}: setting {key} expects {_type_name(hint)}, got {value!r}; fix the value "
                      "(\"none\" for None).")


def parse_recipe_toml(text: str, source: str = "recipe file") -> tuple[str | None, dict[str, Any]]:
    """Read a recipe file's text: its preset and its settings.

    Args:
        text: the TOML text.
        source: the file's name, for messages.

    Returns:
        ``(preset or None, settings)``: the settings as typed values, every one the file holds.

    Raises:
        ConfigError: for invalid TOML, an unknown key or a value of the wrong type, in one
            line naming the key, the file and the line.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err}); fix the file or write a new one with "
                          "'gankit config PRESET'.") from None
    hints = _hints()
    preset = data.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"{source} line {_line_of(text, 'preset')}: preset must be a string, got {preset!r}.")
    table = data.pop("settings", {})
    for key in data:  # settings written at the top level are accepted too
        if key in hints and not isinstance(data[key], dict):
            table.setdefault(key, data[key])
        else:
            line = _line_of(text, key)
            raise ConfigError(f"{source}{f' line {line}' if line else ''}: unknown key {key!r}; a recipe file "
                              "holds preset = ... and a [settings] table.")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: settings must be a table ([settings]).")
    out = {}
    for key, value in table.items():
        line = _line_of(text, key)
        where = f"{source}{f' line {line}' if line else ''}"
        if key not in hints:
            import difflib

            close = difflib.get_close_matches(key, list(hints), n=1)
            raise ConfigError(f"{where}: unknown setting {key!r}" + (f"; did you mean {close[0]}?" if close else
                              f"; valid settings: {', '.join(hints)}."))
        out[key] = _coerce(key, value, hints[key], where)
    return preset, out


def read_recipe_file(path: str | os.PathLike) -> tuple[str | None, dict[str, Any]]:
    """Read a recipe file written by ``gankit config`` (or by hand).

    Args:
        path: the ``.toml`` file.

    Returns:
        ``(preset or None, settings)`` as :func:`parse_recipe_toml`.

    Raises:
        ConfigError: for a missing file, invalid TOML, unknown keys or wrong types.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file {p} does not exist; write one with 'gankit config PRESET > {p}'.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read recipe file {p}: {err}") from None
    return parse_recipe_toml(text, str(p))
