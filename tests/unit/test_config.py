"""Run settings: defaults without a file, TOML then flags, precise errors, a writer that reads back."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluator.errors import UserError
from harness.config.settings import ModelSpec, Price, RunConfig, dump_toml, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_no_file_and_no_flags_gives_the_defaults() -> None:
    config = load_config(None, {})
    assert config == RunConfig()
    assert config.proposer.api_key_env == "OPENAI_API_KEY" and config.population.islands >= 1


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\niterations = 40\nseed = 3\n[population]\nselection = "weighted"\n')
    config = load_config(path, {"run.iterations": 7, "run.seed": None, "population.islands": "2"})
    assert (config.run.iterations, config.run.seed) == (7, 3)  # None: the flag was not given
    assert config.population.islands == 2  # text from a --set style flag is read as TOML
    assert config.population.selection == "weighted"
    assert config.evaluator == RunConfig().evaluator


@pytest.mark.parametrize(("text", "message"), [
    ("[run]\niteratons = 3\n", "run.toml: unknown key 'iteratons' in [run]; did you mean 'iterations'?"),
    ("[populaton]\nislands = 3\n", "run.toml: unknown section 'populaton'; did you mean 'population'?"),
    ("[run]\niterations = \"5\"\n", "run.toml: [run] iterations must be an integer, got '5' (a string)"),
    ("[run]\nconcurrency = 0\n", "run.toml: [run] concurrency must be >= 1, got 0"),
    ("[run]\nworkers = 0\n", "run.toml: [run] workers must be >= 1, got 0"),
    ('[run]\nexecutor = "dask"\n', '[run] executor must be one of "local", "ray", got \'dask\''),
    ("[evaluator]\ncascade = 1\n", "run.toml: [evaluator] cascade must be true or false, got 1"),
    ("[run]\nseed = true\n", "run.toml: [run] seed must be an integer, got True"),
    ('[evaluator]\ndevice = "gpu"\n', '[evaluator] device must be one of "auto", "cpu", "cuda", got \'gpu\''),
    ("[population]\nselection = \"powerlaw\"\n", "did you mean \"power_law\"?"),
    ("[evaluator]\ncascade_margin = 1.5\n", "[evaluator] cascade_margin must be <= 1, got 1.5"),
    ("[evaluator]\nrebalance_period_s = nan\n", "rebalance_period_s must be a number, got nan"),
    ("[proposer]\nmodels = [{ name = \"a\", wieght = 2 }]\n",
     "unknown key 'wieght' in [proposer] models[0]; did you mean 'weight'?"),
    ("[proposer]\nmodels = [{ weight = 2 }]\n", "[proposer] models[0] is missing the key 'name'"),
    ("[proposer]\nprices = { m = { prompt_per_mtok = -1 } }\n",
     "[proposer] prices.m prompt_per_mtok must be >= 0"),
    ("[proposer]\napi_key = \"sk-123\"\n", "API keys never go in a config"),
    ("[proposer]\napi_key_env = \"sk-123\"\n", "must be the NAME of an environment variable"),
    ("[proposer]\nkind = \"replay\"\n", "kind = \"replay\" needs replay_from"),
    ("[proposer]\nmodels = []\n", "models is empty"),
    ("[evaluator]\ncall_timeout_s = 60.0\ndeadline_s = 30.0\n",
     "call_timeout_s (60.0) exceeds deadline_s (30.0)"),
    ("[run]\nname = \"../escape\"\n", "[run] name '../escape'"),
    ("[run\n", "run.toml: not valid TOML"),
])
def test_mistakes_are_reported_precisely_on_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as error:
        load_config(write(tmp_path, text), {})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_flag_mistakes_name_the_command_line() -> None:
    with pytest.raises(UserError, match="^command line: unknown key 'iteratons' in \\[run\\]"):
        load_config(None, {"run.iteratons": 5})
    with pytest.raises(UserError, match="^command line: \\[run\\] iterations must be an integer, got 'ten'"):
        load_config(None, {"run.iterations": "ten"})
    with pytest.raises(UserError, match="needs its section .*did you mean 'population.islands'"):
        load_config(None, {"islands": 3})


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "absent.toml", {})


def test_dump_then_load_gives_the_same_config(tmp_path: Path) -> None:
    changed = load_config(None, {
        "run.name": "exp-1", "run.max_time_s": 3600.0, "run.max_cost": 2.5, "run.seed": -4,
        "run.workers": 3, "run.executor": "ray", "run.ray_address": "ray://head:10001",
        "evaluator.device": "cuda", "evaluator.timing": "wall", "evaluator.cascade": True,
        "evaluator.cascade_margin": 1e-05,
        "population.selection": "hill_climb", "population.power_law_exponent": math.inf,
        "proposer.kind": "replay", "proposer.replay_from": 'runs/old "quoted" \\ dir\tx\x7f',
        "proposer.models": [{"name": "openai/gpt-4.1", "weight": 2}, {"name": "qwen:7b"}],
        "proposer.prices": {"openai/gpt-4.1": {"prompt_per_mtok": 2.0, "completion_per_mtok": 8.0}},
        "proposer.api_base": "http://localhost:8000/v1",
    })
    assert changed.proposer.models == (ModelSpec("openai/gpt-4.1", 2.0), ModelSpec("qwen:7b", 1.0))
    assert changed.proposer.prices == {"openai/gpt-4.1": Price(2.0, 8.0)}
    for config in (RunConfig(), changed):
        assert load_config(write(tmp_path, dump_toml(config)), {}) == config
