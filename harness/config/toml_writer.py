"""A small TOML writer for flat settings sections (Python reads TOML but has no writer).

It covers what the settings use: [section] tables of booleans, integers, floats, strings,
lists of small dataclasses (written as inline tables) and string-keyed tables of them. None
means "not set" and is left out, which TOML cannot spell otherwise.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also forbids a raw DEL character.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _pairs(obj: Any) -> list[tuple[str, Any]]:
    """Fields of a dataclass (or items of a mapping) that are set."""
    items = [(f.name, getattr(obj, f.name)) for f in fields(obj)] if is_dataclass(obj) else list(obj.items())
    return [(k, v) for k, v in items if v is not None]


def _value(v: Any) -> str:
    """One value in TOML syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)  # Python's float repr ('0.1', '1e-05', 'inf', 'nan') is valid TOML
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in v) + "]"
    if is_dataclass(v) or isinstance(v, Mapping):
        pairs = _pairs(v)
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in pairs) + " }" if pairs else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dump_sections(sections: Mapping[str, Any], header: str = "") -> str:
    """`[name]` tables, one `key = value` line per set field of each section's dataclass."""
    lines = [f"# {header}"] if header else []
    for name, section in sections.items():
        lines += ["", f"[{_key(name)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in _pairs(section)]
    return "\n".join(lines).lstrip("\n") + "\n"
