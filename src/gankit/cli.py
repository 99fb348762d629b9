"""The ``gankit`` command line (also ``python -m gankit``).

Every error a user can cause is printed as one line on stderr with a non-zero exit
status; tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import GankitError

__all__ = ["main", "build_parser"]

EPILOG = """examples:
  gankit presets
  gankit summary dcgan_task1
"""


def _cmd_presets(args: argparse.Namespace) -> int:
    from .presets import list_presets, preset_description

    names = list_presets(args.pattern)
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .presets import get_preset
    from .summary import summary

    recipe = get_preset(args.preset, **_parse_sets(args.set))
    print(f"{recipe.name}: {recipe.description}")
    print("\nGenerator")
    summary(recipe.generator, (recipe.z_dim,))
    print("\nDiscriminator")
    summary(recipe.discriminator, (recipe.channels, recipe.image_size, recipe.image_size))
    print("\nSettings")
    for line in recipe.summary_lines():
        print(f"  {line}")
    return 0


def _parse_sets(items: Sequence[str] | None) -> dict:
    """Turn ``["key=value", ...]`` into typed recipe overrides."""
    from .errors import ConfigError
    from .presets import RecipeSettings

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set batch_size=32).")
        out[key.strip()] = RecipeSettings.parse_value(key.strip(), value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``gankit`` command.

    Returns:
        The :class:`argparse.ArgumentParser` with one sub-command per action.
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="gankit",
        description="Composable, exact and fast GANs for PyTorch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("presets", help="list the registered presets")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'dcgan*'")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "summary",
        help="print a preset's layer tables and settings",
        epilog="example:\n  gankit summary wgan_task2 --set base_channels=32",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", help="a registered preset name (see 'gankit presets')")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=_cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 for a user error, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GankitError as err:
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
