"""A release's build parameters, declared once as a frozen dataclass.

Each field is one parameter: its name is the key the manifest records, its default is the
build's default, and :func:`option` attaches the command-line flag and help. From that one
declaration come the CLI options (:func:`add_arguments`), the parameters of a parsed command
line (:func:`from_args`) and the complete record the manifest keeps (:func:`resolve`).

A field made with :func:`fixed` is recorded in the manifest but has no option (for example the
basis set of a release that only builds STO-3G).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable


def option(default: Any, help: str, flag: str | None = None, type: Callable | None = None,
           choices: tuple | None = None, metavar: str | None = None, to_record: Callable | None = None):
    """A parameter settable from the command line.

    Args:
        default: the build's default (shown in ``--help``).
        help: one line for ``--help``; the default is appended to it.
        flag: the option's name (default ``--<field name with dashes>``).
        type: converts the command-line string (default: the type of ``default``; a bool
            default makes a ``store_true`` flag).
        choices: allowed values.
        metavar: name of the value in ``--help``.
        to_record: converts the parsed value for the manifest (e.g. ``str`` for a path).
    """
    meta = {"help": help, "flag": flag, "type": type, "choices": choices, "metavar": metavar,
            "to_record": to_record, "cli": True}
    return dataclasses.field(default=default, metadata=meta)


def fixed(value: Any):
    """A parameter recorded in the manifest that the command line cannot change."""
    if isinstance(value, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"cli": False})
    return dataclasses.field(default=value, metadata={"cli": False})


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _dest(field: dataclasses.Field) -> str:
    return _flag(field)[2:].replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser, params_type: type) -> None:
    """Add one option per settable field of the dataclass ``params_type`` to ``parser``."""
    for field in dataclasses.fields(params_type):
        meta = field.metadata
        if not meta.get("cli"):
            continue
        default = field.default
        if isinstance(default, bool) and meta.get("type") is None:
            parser.add_argument(_flag(field), action="store_true", help=meta["help"])
            continue
        kind = meta.get("type") or (type(default) if default is not None else str)
        shown = "" if default is None else f" (default {default})"
        parser.add_argument(_flag(field), type=kind, default=default, choices=meta.get("choices"),
                            metavar=meta.get("metavar"), help=meta["help"] + shown)


def from_args(params_type: type, args: argparse.Namespace) -> dict:
    """The settable parameters of a parsed command line, keyed as the manifest records them."""
    out = {}
    for field in dataclasses.fields(params_type):
        if field.metadata.get("cli"):
            value = getattr(args, _dest(field))
            convert = field.metadata.get("to_record")
            out[field.name] = convert(value) if (convert and value is not None) else value
    return out


def resolve(params_type: type, params: dict, extra: tuple = ()) -> dict:
    """Every parameter of ``params_type``: the given ones (converted to the field's type), the
    defaults for the rest (a given None also means the default), and the fixed ones; the dict a
    manifest records, in the dataclass's field order.

    Args:
        params_type: the release's parameter dataclass.
        params: the parameters given (from the command line or a caller).
        extra: names the release handles itself besides the dataclass (left out of the result).
    Raises:
        ValueError: ``params`` names a parameter that is neither a field nor in ``extra`` (a
            misspelt parameter never passes silently).
    """
    names = {f.name for f in dataclasses.fields(params_type)}
    unknown = sorted(set(params) - names - set(extra))
    if unknown:
        known = ", ".join(sorted(names | set(extra)))
        raise ValueError(f"unknown build parameter(s) {', '.join(unknown)}; known: {known}")
    given = {k: v for k, v in params.items() if k in names}
    record = {}
    for field in dataclasses.fields(params_type):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if not field.metadata.get("cli"):
            record[field.name] = default
            continue
        value = given.get(field.name)
        if value is None:
            value = default
        kind = type(default) if default is not None else field.metadata.get("type")
        if value is not None and kind in (bool, int, float):
            value = kind(value)
        record[field.name] = value
    return dataclasses.asdict(params_type(**record))
