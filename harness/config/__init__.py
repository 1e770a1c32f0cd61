"""A run's settings: frozen dataclasses read from TOML and flags, with precise errors, and written
back to the run directory as TOML."""

from harness.config.settings import (
    EvaluatorSettings,
    ModelSpec,
    PopulationSettings,
    Price,
    ProposerSettings,
    RunConfig,
    RunSettings,
    dump_toml,
    load_config,
)

__all__ = ["RunConfig", "RunSettings", "EvaluatorSettings", "PopulationSettings", "ProposerSettings",
           "ModelSpec", "Price", "load_config", "dump_toml"]
