"""A run's settings: frozen dataclasses, filled from defaults, then a TOML file, then command-line flags.

The dataclasses below are the schema: a field's type says what TOML value it takes (a
`Literal` lists the allowed words), its metadata the allowed range. One generic loader checks
every key against them, so a typo or a wrong type is reported with the file, the section, the
key and a close match, instead of being silently ignored (a peer's habit).

API keys never live here: `[proposer] api_key_env` names the environment variable holding the
key, so config.toml can be saved in the run directory and shared.
"""
from __future__ import annotations

import difflib
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from evaluator.errors import UserError
from harness.config.toml_writer import dump_sections


def _limit(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A field with an allowed range, checked by the loader."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


@dataclass(frozen=True)
class RunSettings:
    name: str | None = None  # None: the command line names the run (e.g. after the date)
    runs_dir: str = "runs"
    iterations: int = _limit(100, ge=0)  # attempts (proposals tried), not candidates evaluated
    max_time_s: float | None = _limit(None, gt=0)
    max_cost: float | None = _limit(None, ge=0)  # dollars
    seed: int = 0
    concurrency: int = _limit(1, ge=1)  # proposals (model conversations) in flight at once
    fix_attempts: int = _limit(2, ge=0)  # follow-up model calls when a patch does not apply
    # Evaluations at once. None: what the executor allows -- locally, one per [evaluator] threads
    # physical cores (and one per GPU on cuda); on Ray, the cluster's CPUs / threads (or its GPUs).
    workers: int | None = _limit(None, ge=1)
    executor: Literal["local", "ray"] = "local"  # where evaluations run (see docs/scaling.md)
    # None: Ray's own rule (RAY_ADDRESS, else the cluster last started on this machine, else a new
    # local instance); "auto": an existing cluster only; "HOST:PORT" or "ray://HOST:10001"
    ray_address: str | None = None


@dataclass(frozen=True)
class EvaluatorSettings:
    suite: str = "default"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    rebalance_period_s: float = _limit(10.0, gt=0)
    # What combined_score multiplies (evaluator.evaluate): the modelled deployment efficiency, or
    # GPU-level balancedness alone (the peers' score, for comparison).
    objective: Literal["efficiency", "balancedness"] = "efficiency"
    call_timeout_s: float = _limit(10.0, gt=0)  # one rebalance call
    deadline_s: float = _limit(300.0, gt=0)  # one whole evaluation
    memory_mb: int = _limit(4096, ge=64)
    threads: int = _limit(1, ge=1)
    sandbox: Literal["auto", "process", "bwrap"] = "auto"  # auto: bwrap where it works, else process
    max_processes: int = _limit(256, ge=1)  # processes and threads a candidate may have at once
    # runtime_ms normalised by the yardstick beside each call, or plain wall clock (evaluator.evaluate)
    timing: Literal["normalised", "wall"] = "normalised"
    cascade: bool = False  # score on a quick subset first; finish only promising programs
    cascade_margin: float = _limit(0.05, ge=0, le=1)


@dataclass(frozen=True)
class PopulationSettings:
    islands: int = _limit(4, ge=1)
    migration_interval: int = _limit(20, ge=0)  # candidates added between migrations; 0: never
    selection: Literal["power_law", "weighted", "hill_climb"] = "power_law"
    power_law_exponent: float = _limit(1.0, ge=0)
    num_inspirations: int = _limit(3, ge=0)  # top programs of the parent's island in the prompt
    num_diverse: int = _limit(2, ge=0)  # plus programs from other islands / the Pareto archive


@dataclass(frozen=True)
class ModelSpec:
    name: str
    weight: float = _limit(1.0, gt=0)  # relative share of model calls


@dataclass(frozen=True)
class Price:
    prompt_per_mtok: float = _limit(0.0, ge=0)  # dollars per million prompt tokens
    completion_per_mtok: float = _limit(0.0, ge=0)


@dataclass(frozen=True)
class ProposerSettings:
    kind: Literal["llm", "mutate", "replay"] = "llm"
    models: tuple[ModelSpec, ...] = (ModelSpec("gpt-4o-mini"),)
    api_base: str | None = None  # None: the OpenAI endpoint; set it for vLLM, Ollama, proxies
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = _limit(120.0, gt=0)
    max_retries: int = _limit(2, ge=0)
    context_tokens: int = _limit(128_000, ge=1024)
    max_output_tokens: int = _limit(8192, ge=1)
    temperature: float = _limit(0.7, ge=0, le=2)
    replay_from: str | None = None  # run directory whose recorded responses are replayed
    prices: dict[str, Price] = field(default_factory=lambda: {"gpt-4o-mini": Price(0.15, 0.60)})


@dataclass(frozen=True)
class RunConfig:
    run: RunSettings = field(default_factory=RunSettings)
    evaluator: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    population: PopulationSettings = field(default_factory=PopulationSettings)
    proposer: ProposerSettings = field(default_factory=ProposerSettings)


SECTIONS: dict[str, type] = typing.get_type_hints(RunConfig)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TYPE_NAMES: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number",
                                str: "a string", list: "a list", dict: "a table"}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _unwrap(hint: Any) -> Any:
    """`X | None` -> X (None is spelled by leaving the key out)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _unknown(source: str, what: str, name: str, place: str, known: list[str]) -> UserError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
    return UserError(f"{source}: unknown {what} '{name}'{place}; {hint}")


def _check_range(value: float, meta: Mapping[str, Any], where: str) -> None:
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    if math.isnan(value):
        raise UserError(f"{where} must be a number, got nan")
    if ge is not None and value < ge:
        raise UserError(f"{where} must be >= {ge}, got {value}")
    if gt is not None and value <= gt:
        raise UserError(f"{where} must be > {gt}, got {value}")
    if le is not None and value > le:
        raise UserError(f"{where} must be <= {le}, got {value}")


def _convert(value: Any, hint: Any, meta: Mapping[str, Any], source: str, path: str) -> Any:
    """One TOML value -> the field's Python value, or a UserError saying what was expected."""
    hint = _unwrap(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    where = f"{source}: {path}"
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            maybe = f"; did you mean \"{close[0]}\"?" if close else ""
            choices = ", ".join(f'"{a}"' for a in args)
            raise UserError(f"{where} must be one of {choices}, got {value!r}{maybe}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list of tables, got {value!r} ({_kind(value)})")
        return tuple(_build(args[0], item, source, f"{path}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a table, got {value!r} ({_kind(value)})")
        return {str(k): _build(args[1], v, source, f"{path}.{k}") for k, v in value.items()}
    accepted = (int, float) if hint is float else (hint,)
    if not isinstance(value, accepted) or (hint is not bool and isinstance(value, bool)):
        raise UserError(f"{where} must be {_TYPE_NAMES[hint]}, got {value!r} ({_kind(value)})")
    if hint in (int, float):
        _check_range(value, meta, where)
    return float(value) if hint is float else value


def _build(cls: type, table: Any, source: str, path: str) -> Any:
    """A (nested) settings dataclass from a TOML table, every key checked."""
    if not isinstance(table, dict):
        raise UserError(f"{source}: {path} must be a table, got {table!r} ({_kind(table)})")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise _unknown(source, "key", key, f" in {path}", list(known))
    for name, f in known.items():
        if name not in table and f.default is MISSING and f.default_factory is MISSING:
            raise UserError(f"{source}: {path} is missing the key '{name}'")
    return cls(**{key: _convert(value, hints[key], known[key].metadata, source, f"{path} {key}")
                  for key, value in table.items()})


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the config file ({error})") from None


def _flag_value(section: str, key: str, value: Any) -> Any:
    """A flag given as text ('5', 'true', '[...]') for a non-text setting is read as the TOML
    value it spells; text that spells none stays text and fails the type check."""
    cls = SECTIONS.get(section)
    hint = _unwrap(typing.get_type_hints(cls).get(key)) if cls else None
    if not isinstance(value, str) or hint in (None, str) or typing.get_origin(hint) is Literal:
        return value
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _flags(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"run.iterations": 5} -> {"run": {"iterations": 5}}; None values are flags not given."""
    tables: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not key:
            homes = [name for name, cls in SECTIONS.items() if dotted in {f.name for f in fields(cls)}]
            maybe = f"; did you mean '{homes[0]}.{dotted}'?" if homes else ""
            raise UserError(f"command line: setting '{dotted}' needs its section (section.key){maybe}")
        tables.setdefault(section, {})[key] = _flag_value(section, key, value)
    return tables


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults <- the TOML file (if any) <- `overrides` ({"run.iterations": 50, ...}; None = not given)."""
    layers = [(str(path), _read(path))] if path is not None else []
    layers.append(("command line", _flags(overrides or {})))
    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for source, data in layers:
        for section, table in data.items():
            if section not in SECTIONS:
                raise _unknown(source, "section", section, "", list(SECTIONS))
            if section == "proposer" and isinstance(table, dict) and "api_key" in table:
                raise UserError(f"{source}: [proposer] api_key: API keys never go in a config; export "
                                f"the key in an environment variable and set api_key_env to its name")
            _build(SECTIONS[section], table, source, f"[{section}]")  # errors name the layer at fault
            merged[section].update(table)
    config = RunConfig(**{name: _build(cls, merged[name], "settings", f"[{name}]")
                          for name, cls in SECTIONS.items()})
    _check(config, str(path) if path is not None else "command line")
    return config


def _check(config: RunConfig, source: str) -> None:
    """Rules that span several keys."""
    run, ev, prop = config.run, config.evaluator, config.proposer
    if run.name is not None and not _RUN_NAME.match(run.name):
        raise UserError(f"{source}: [run] name {run.name!r}: use letters, digits, '.', '_' and '-' "
                        f"(it becomes a directory name)")
    if ev.call_timeout_s > ev.deadline_s:
        raise UserError(f"{source}: [evaluator] call_timeout_s ({ev.call_timeout_s}) exceeds deadline_s "
                        f"({ev.deadline_s}); raise deadline_s or lower call_timeout_s")
    if prop.kind == "replay" and not prop.replay_from:
        raise UserError(f"{source}: [proposer] kind = \"replay\" needs replay_from (the run directory "
                        f"whose responses are replayed)")
    if prop.kind == "llm" and not prop.models:
        raise UserError(f"{source}: [proposer] models is empty; list at least one, e.g. "
                        f"models = [{{ name = \"gpt-4o-mini\" }}]")
    names = [m.name for m in prop.models]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: [proposer] models lists a model twice; give each one weight instead")
    if not _ENV_NAME.match(prop.api_key_env):
        raise UserError(f"{source}: [proposer] api_key_env must be the NAME of an environment variable "
                        f"(like OPENAI_API_KEY), not the key itself")
    if prop.max_output_tokens >= prop.context_tokens:
        raise UserError(f"{source}: [proposer] max_output_tokens ({prop.max_output_tokens}) must be below "
                        f"context_tokens ({prop.context_tokens})")


def dump_toml(config: RunConfig) -> str:
    """The config as TOML that `load_config` reads back to an equal config (None keys are left out)."""
    return dump_sections({name: getattr(config, name) for name in SECTIONS},
                         header="eplb-evolve run configuration: defaults, then the file, then flags")
