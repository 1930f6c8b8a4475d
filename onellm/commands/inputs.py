"""Command-line flags for model inputs, built from the modality registry: ``--<modality> PATH`` for every
registered modality plus one flag per loader option (``--rgb``, ``--timestamps`` ...), shared by the modalities that
accept it. Used by ``onellm chat`` and any command that takes inputs on the command line."""
from __future__ import annotations

import argparse
from typing import Any

from ..modalities import get as modality_definition
from ..modalities import names as registered_modalities
from .common import article


def _option_table() -> dict[str, tuple[str, bool, list[str]]]:
    """option -> (help, is a number, modalities that take it)."""
    table: dict[str, tuple[str, bool, list[str]]] = {}
    for name in registered_modalities():
        spec = modality_definition(name).loader
        for option in spec.options:
            help_text, number, users = table.get(option, (spec.option_help.get(option, ""), False, []))
            table[option] = (help_text, number or option in spec.number_options, users + [name])
    return table


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    for name in registered_modalities():
        definition = modality_definition(name)
        p.add_argument(f"--{name}", metavar="PATH",
                       help=f"{article(definition.noun)} ({', '.join(definition.loader.extensions)})")
    for option, (help_text, number, users) in _option_table().items():
        p.add_argument(f"--{option.replace('_', '-')}", dest=f"input_{option}", type=float if number else str,
                       metavar=option.upper(), help=f"{help_text} (for --{' / --'.join(users)})")


def inputs_from_args(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """[(modality, path, loader options)] of the inputs given on the command line, in registry order."""
    out = []
    for name in registered_modalities():
        path = getattr(args, name, None)
        if not path:
            continue
        spec = modality_definition(name).loader
        options = {o: getattr(args, f"input_{o}") for o in spec.options if getattr(args, f"input_{o}", None) is not None}
        out.append((name, path, options))
    return out
