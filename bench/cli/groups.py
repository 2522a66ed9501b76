"""One mechanism for command groups: ``ragfix <group> <command>`` where each command is a module
exposing ``add_parser(subparsers)``; adding a command is appending a module name to a list."""
from __future__ import annotations

import argparse
import importlib
from typing import Sequence

__all__ = ["add_group", "register_modules"]


def register_modules(subparsers: argparse._SubParsersAction, modules: Sequence[str]) -> None:
    """Call each module's ``add_parser(subparsers)``; ``"module:function"`` names another adder."""
    for entry in modules:
        mod, _, fn = entry.partition(":")
        getattr(importlib.import_module(mod), fn or "add_parser")(subparsers)


def add_group(sub: argparse._SubParsersAction, name: str, help: str, modules: Sequence[str]) -> argparse._SubParsersAction:
    """Add ``ragfix <name>`` with one subcommand per module; returns the group's subparsers."""
    group = sub.add_parser(name, help=help).add_subparsers(dest=name, required=True)
    register_modules(group, modules)
    return group
