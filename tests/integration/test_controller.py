"""The search loop end to end, with real parts: a real run store (Git), the real LLM proposer
talking to the real test HTTP server, and real isolated evaluations.

To keep the suite fast, candidates are scored on one tiny scenario (4 layers x 32 experts, 4
windows) instead of a named suite; everything else is what `eplb-evolve run` builds.
"""
from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer, malformed, ok, rate_limited, server_error, slow
from paths import TESTS

from evaluator.evaluate import evaluate
from evaluator.workloads.scenarios import Scenario, Shape
from evaluator.workloads.synthetic import SyntheticSource, TraceParams
from harness.cli.run_setup import SEED_DESCRIPTION, eval_options, make_population
from harness.config.settings import dump_toml, load_config
from harness.diff.response import ResponseError, parse_response
from harness.execution.executors import Evaluations, Suites
from harness.execution.local_slots import LocalEvaluations
from harness.proposers.llm import LLMOptions, LLMProposer
from harness.proposers.moves import LIBRARY
from harness.proposers.mutate import MutateProposer, format_response
from harness.proposers.prompts import build_cut_off_message
from harness.search.controller import Controller
from harness.store import journal as journal_file
from harness.store.candidate import Candidate, code_hash
from harness.store.journal import Spend
from harness.store.run_store import RunStore
from harness.store.status import Status
from seed_program import SEED_PATH

SEED = SEED_PATH.read_text(encoding="utf-8")
MOVES = {move.name: move for move in LIBRARY}
PRICES = (2.0, 10.0)  # $/Mtok for test-model
TINY = Scenario("tiny", Shape(4, 32, 40, 4, 2, 8), "4 x 32 experts on 8 GPUs in 2 nodes",
                SyntheticSource(TraceParams(), 4, 32, 7, 4, 2))


def answer(move_name: str) -> str:
    move = MOVES[move_name]
    return f"Here is my change.\n\n{format_response(move.name, move.description, move.edits)}"


def miss_answer() -> str:
    (search, replace_text), = MOVES["global_policy"].edits
    return format_response("miscopied", "A SEARCH that is not in the program.",
                           ((search.replace("% num_nodes == 0", "% num_nodes == 5"), replace_text),))


BROKEN = format_response("broken", "Raises on every call.", ((
    "    weight = weight.detach().float().cpu()\n",
    "    weight = weight.detach().float().cpu()\n    raise RuntimeError(\"deliberately broken placement\")\n"),))


@pytest.fixture(scope="module")
def seed_candidate() -> Candidate:
    """The seed, evaluated once on the tiny scenario (what `evaluate_seed` does on a named suite)."""
    config = load_config(None, {"evaluator.device": "cpu"})
    evaluation = evaluate(SEED_PATH, [TINY], "tiny", eval_options(config))
    assert evaluation.valid, evaluation.error
    return Candidate(id=0, parent_ids=(), island=0, name="seed", description=SEED_DESCRIPTION, code=SEED,
                     code_hash=code_hash(SEED), status=Status.VALID, evaluation=evaluation, model="", prompt_tokens=0,
                     completion_tokens=0, cost=0.0, iteration=0, created_at=time.time())


@pytest.fixture(scope="module")
def evaluations() -> Evaluations:
    """One local worker slot for the module's runs (the controller takes its executor from outside)."""
    slots = LocalEvaluations.on_this_machine("cpu", 1, 1)
    yield slots
    slots.shutdown()


def llm(server: FakeOpenAIServer, **overrides) -> LLMProposer:
    options = dict(models=(("test-model", 1.0),), api_base=server.url, timeout_s=5.0, retries=2,
                   backoff_base_s=0.01, backoff_max_s=0.05, prices={"test-model": PRICES})
    options.update(overrides)
    return LLMProposer(LLMOptions(**options), environ={"OPENAI_API_KEY": "sk-test"}, sleep=lambda _s: None)


def start(path: Path, seed: Candidate, proposer, evaluations: Evaluations,
          **settings) -> tuple[RunStore, Controller]:
    # One worker: these tests script what each prompt shows, so each evaluation must be recorded
    # before the next attempt is planned (with more, the next proposal overlaps the evaluation).
    # One fix turn: the scripted answers below assume each failed patch is retried once.
    overrides = {"evaluator.device": "cpu", "run.iterations": 4, "population.islands": 1, "run.workers": 1,
                 "run.fix_attempts": 1, **settings}
    config = load_config(None, overrides)
    store = RunStore.create(path, dump_toml(config), seed)
    return store, make_controller(store, config, proposer, evaluations, seed)


def make_controller(store: RunStore, config, proposer, evaluations: Evaluations, seed: Candidate,
                    **options) -> Controller:
    population = make_population(config, store.load_candidates(), store.next_attempt)
    suites = Suites(name="tiny", scenarios=(TINY,), options=eval_options(config, seed.evaluation))
    return Controller(store, config, population, proposer, suites, evaluations, **options)


def journal(store: RunStore) -> list[dict]:
    """The attempts' outcome lines, in journal order (the seed's left out)."""
    return [e for e in store.load_journal() if not journal_file.is_call(e) and e["attempt"] > 0]


def call_lines(store: RunStore) -> list[dict]:
    return [e for e in store.load_journal() if journal_file.is_call(e)]


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout


def user_prompt(request) -> str:
    return next(m["content"] for m in request.body["messages"] if m["role"] == "user")


def test_an_applied_answer_is_evaluated_and_committed_with_its_tokens_and_cost(tmp_path, openai_server,
                                                                                seed_candidate, evaluations):
    openai_server.push(ok(answer("global_policy"), usage=(1000, 200)))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 1})
    with store:
        tally = controller.run()
        (child,) = [c for c in store.load_candidates() if c.id == 1]
        (entry,) = journal(store)

    cost = (1000 * PRICES[0] + 200 * PRICES[1]) / 1e6
    assert child.status is Status.VALID and child.parent_ids == (0,) and child.iteration == 1
    assert child.code == MOVES["global_policy"].apply(SEED) and child.name == "global_policy"
    assert (child.prompt_tokens, child.completion_tokens, child.model) == (1000, 200, "test-model")
    assert child.cost == pytest.approx(cost)
    assert (tally.attempts, tally.evaluated, tally.valid) == (1, 1, 1)
    assert (tally.spent.prompt_tokens, tally.spent.completion_tokens) == (1000, 200)
    assert tally.spent.cost == pytest.approx(cost) and (tally.calls, tally.cut_off) == (1, 0)

    message = git(tmp_path / "run", "log", "-1", "--format=%B", child.commit)
    assert message.startswith("global_policy\n\n" + MOVES["global_policy"].description[:40])
    trailers = dict(line.split(": ", 1) for line in message.strip().split("\n\n")[-1].splitlines())
    assert trailers["Tokens"] == "1000+200" and trailers["Model"] == "test-model"
    assert float(trailers["Cost"]) == pytest.approx(cost, abs=1e-6)
    assert float(trailers["Combined-Score"]) == pytest.approx(child.evaluation.combined_score, abs=1e-4)

    # the journal points at the raw prompt and answer, byte for byte what went over the wire
    assert entry["candidate_id"] == 1 and entry["status"] == "valid" and entry["commit"] == child.commit
    (call,) = entry["calls"]
    sent = openai_server.chat_requests[0].body["messages"]
    assert json.loads((tmp_path / "run" / call["prompt"]).read_text()) == sent
    assert (tmp_path / "run" / call["response"]).read_text() == answer("global_policy")
    assert (call["prompt_tokens"], call["completion_tokens"]) == (1000, 200)


def test_the_prompt_shows_the_parent_program_its_metrics_and_its_feedback(tmp_path, openai_server,
                                                                           seed_candidate, evaluations):
    openai_server.push(ok(answer("vectorised_packing")))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 1})
    with store:
        controller.run()
    prompt = user_prompt(openai_server.chat_requests[0])
    ev = seed_candidate.evaluation
    assert SEED.rstrip() in prompt
    assert f"combined_score: {ev.combined_score:.4f}" in prompt
    assert f"balancedness: {ev.balancedness:.4f}" in prompt
    assert ev.feedback.strip() and ev.feedback.strip() in prompt
    assert "Recent attempts on this program that failed" not in prompt  # nothing has failed yet


def test_a_patch_miss_is_retried_in_the_same_conversation_and_both_calls_are_recorded(tmp_path, openai_server,
                                                                                    seed_candidate, evaluations):
    openai_server.push(ok(miss_answer(), usage=(900, 100)), ok(answer("global_policy"), usage=(1100, 150)))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 1, "run.fix_attempts": 2})
    with store:
        controller.run()
        (entry,) = journal(store)
        child = store.load_candidates()[1]

    first, second = openai_server.chat_requests
    conversation = second.body["messages"]
    assert conversation[:2] == first.body["messages"]
    assert conversation[2] == {"role": "assistant", "content": miss_answer()}
    assert conversation[3]["role"] == "user" and "block 1 failed" in conversation[3]["content"]
    assert child.status == "valid" and child.code == MOVES["global_policy"].apply(SEED)
    assert (child.prompt_tokens, child.completion_tokens) == (2000, 250)
    assert [c["prompt"] for c in entry["calls"]] == ["artifacts/000001/prompt.txt", "artifacts/000001/prompt-2.txt"]
    assert json.loads((tmp_path / "run" / entry["calls"][1]["prompt"]).read_text()) == conversation
    assert entry["blocks"][0]["status"] == "exact"


def test_failures_are_journaled_or_committed_and_the_run_goes_on(tmp_path, openai_server, seed_candidate,
                                                                  evaluations):
    openai_server.push(
        ok(miss_answer()), ok(miss_answer()),        # attempt 1: the miss, then the same miss again
        ok(BROKEN),                                   # attempt 2: applies, fails in evaluation
        malformed(), server_error(500), rate_limited("0"),  # attempt 3: every try fails (retries=2)
        server_error(503), ok(answer("global_policy")),     # attempt 4: a 503, then an answer
    )
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 4})
    with store:
        tally = controller.run()
        entries = journal(store)
        candidates = store.load_candidates()

    assert [e["status"] for e in entries] == ["patch_failed", "invalid", "endpoint_error", "valid"]
    assert [e["attempt"] for e in entries] == [1, 2, 3, 4]
    patch_error = entries[0]["error"]
    assert patch_error.startswith("not applied: 1 of 1 block(s) failed") and entries[0]["candidate_id"] is None
    outage = entries[2]["error"]
    assert "HTTP 429" in outage and "gave up after 3 attempts" in outage and "answer_status" not in entries[2]
    assert (tally.attempts, tally.evaluated, tally.valid) == (4, 2, 1)

    # the failed program is a commit too, with its error, and nothing is ever bred from it
    broken = candidates[1]
    assert broken.status is Status.INVALID and "deliberately broken placement" in broken.evaluation.error
    assert entries[1]["error"] == broken.evaluation.error
    assert "Status: invalid" in git(tmp_path / "run", "log", "-1", "--format=%B", broken.commit)
    assert candidates[2].parent_ids == (0,)
    valid = {c.id for c in candidates if c.valid}
    assert all(set(c.parent_ids) <= valid for c in candidates)

    # each prompt after a failure carries the exact error of the last failure on the lineage
    prompts = [user_prompt(r) for r in openai_server.chat_requests]
    prompt_2 = prompts[2]  # calls: attempt 1 x2, then attempt 2
    assert patch_error in prompt_2 and miss_answer().split("<DIFF>")[1].splitlines()[2] in prompt_2
    for later in prompts[3:]:  # attempts 3 and 4 see the evaluation failure of attempt 2, once
        assert later.count(broken.evaluation.error) == 1 and patch_error in later
        failures = later.split("# Recent attempts on this program that failed")[1]
        assert failures.index(patch_error) < failures.index(broken.evaluation.error)  # oldest first
        assert "HTTP 429" not in later  # the endpoint's outage is never shown as the model's mistake


def test_the_newest_failure_on_the_lineage_is_shown_even_after_many_older_ones(tmp_path, openai_server,
                                                                                 seed_candidate, evaluations):
    # Two islands take turns; hill-climbing picks each island's best. Island 1 breeds from candidate 1
    # and collects three patch misses; then the seed's attempt on island 0 fails in evaluation.
    # That newest failure (on candidate 1's lineage: the seed) must be in the next prompt on island 1.
    openai_server.push(
        ok(answer("global_policy")),                  # 1, island 1: candidate 1 (beats the seed)
        ok(answer("global_policy")), ok(miss_answer()),  # 2: duplicate on island 0; 3: miss on island 1
        ok(answer("global_policy")), ok(miss_answer()),  # 4, 5
        ok(answer("global_policy")), ok(miss_answer()),  # 6, 7
        ok(BROKEN),                                   # 8, island 0: fails in evaluation
        ok(answer("shrink_loads")))                   # 9, island 1
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 9, "run.fix_attempts": 0, "population.islands": 2,
                                 "population.selection": "hill_climb"})
    with store:
        controller.run()
        entries = journal(store)
        broken = store.load_candidates()[2]
    assert [e["status"] for e in entries] == ["valid"] + ["duplicate", "patch_failed"] * 3 + ["invalid", "valid"]
    assert [e["parent_ids"] for e in entries if e["island"] == 1][1:] == [[1]] * 4
    assert broken.status == "invalid" and broken.iteration == 8
    section = user_prompt(openai_server.chat_requests[-1]).split("# Recent attempts on this program that failed")[1]
    assert broken.evaluation.error in section
    assert section.count("Error: ") == 3 and section.count(entries[2]["error"].splitlines()[0]) == 2


def test_a_duplicate_program_is_journaled_and_not_evaluated_again(tmp_path, openai_server, seed_candidate,
                                                                   evaluations):
    openai_server.push(ok(answer("global_policy")), ok(answer("global_policy")))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 2, "run.fix_attempts": 0})
    with store:
        tally = controller.run()
        entries = journal(store)
    assert [e["status"] for e in entries] == ["valid", "duplicate"]
    assert entries[1]["error"] == "same program as candidate 1 (global_policy)"
    assert entries[1]["candidate_id"] is None and len(entries[1]["calls"]) == 1
    assert tally.evaluated == 1 and len(store.load_candidates()) == 2


def test_a_duplicate_is_sent_back_so_the_attempt_is_not_wasted(tmp_path, openai_server, seed_candidate,
                                                                evaluations):
    openai_server.push(ok(answer("global_policy")), ok(answer("global_policy")), ok(answer("shrink_loads")))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 2, "run.fix_attempts": 1, "population.islands": 2})
    with store:
        controller.run()
        entries = journal(store)
        candidates = store.load_candidates()
    assert [e["status"] for e in entries] == ["valid", "valid"]  # island 0 repeated island 1's first move
    assert [c.name for c in candidates] == ["seed", "global_policy", "shrink_loads"]
    retry = openai_server.chat_requests[2].body["messages"]
    assert retry[:-2] == openai_server.chat_requests[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": answer("global_policy")}
    assert "same program as candidate 1 (global_policy)" in retry[-1]["content"]
    assert len(entries[1]["calls"]) == 2


def test_the_money_limit_stops_the_run(tmp_path, openai_server, seed_candidate, evaluations):
    openai_server.push(ok(miss_answer(), usage=(600_000, 0)), ok(miss_answer(), usage=(600_000, 0)))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server, max_cost=1.0), evaluations,
                              **{"run.iterations": 10, "run.max_cost": 1.0, "run.fix_attempts": 3})
    with store:
        tally = controller.run()
        entries = journal(store)
    assert tally.stopped_by == "max_cost"
    assert [e["status"] for e in entries] == ["budget_exhausted"]
    assert len(openai_server.chat_requests) == 1 and tally.spent.cost == pytest.approx(1.2)


def test_concurrent_offline_attempts_keep_ids_attempts_and_islands_consistent(tmp_path, seed_candidate,
                                                                              evaluations):
    store, controller = start(tmp_path / "run", seed_candidate, MutateProposer(), evaluations,
                              **{"run.iterations": 8, "run.concurrency": 2, "population.islands": 2})
    with store:
        tally = controller.run()
        entries = journal(store)
        candidates = store.load_candidates()
    assert sorted(e["attempt"] for e in entries) == list(range(1, 9)) and tally.attempts == 8
    assert [c.id for c in candidates] == list(range(len(candidates))) and len(candidates) >= 3
    by_id = {c.id: c for c in candidates}
    for entry in entries:
        assert entry["island"] == entry["attempt"] % 2
        if entry["candidate_id"] is not None:
            child = by_id[entry["candidate_id"]]
            assert child.iteration == entry["attempt"] and child.island == entry["island"]
            # a child lives where its (first) parent was picked from
            parent = by_id[child.parent_ids[0]]
            assert parent.id == 0 or parent.island == child.island or len(child.parent_ids) == 1
    hashes = [c.code_hash for c in candidates]
    assert len(set(hashes)) == len(hashes)  # nothing was evaluated twice
    heads = git(tmp_path / "run", "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
    assert {line.split()[0] for line in heads.splitlines()} == {"island-0", "island-1"}


CRASHING_WORKER = """
import os, sys
from pathlib import Path
sys.path[:0] = sys.argv[3].split(os.pathsep)
from harness.config.settings import load_config
from harness.execution.executors import Suites
from harness.execution.local_slots import LocalEvaluations
from harness.search.controller import Controller
from harness.proposers.llm import LLMOptions, LLMProposer
from harness.cli.run_setup import eval_options, make_population
from harness.store.run_store import RunStore
from test_controller import TINY, TWO_MODELS
run, url = Path(sys.argv[1]), sys.argv[2]
config = load_config(run / "config.toml")
with RunStore.open(run) as store:
    candidates = store.load_candidates()
    proposer = LLMProposer(LLMOptions(models=TWO_MODELS, api_base=url, timeout_s=120, retries=0),
                           environ={"OPENAI_API_KEY": "sk-test"})
    suites = Suites("tiny", (TINY,), eval_options(config, candidates[0].evaluation))
    evaluations = LocalEvaluations.on_this_machine("cpu", config.evaluator.threads, 1)
    Controller(store, config, make_population(config, candidates, store.next_attempt), proposer, suites,
               evaluations).run()
"""
TWO_MODELS = (("model-a", 1.0), ("model-b", 1.0))


def test_kill_9_while_an_earlier_attempt_still_waits_on_the_model_leaves_no_gap(tmp_path, openai_server,
                                                                                seed_candidate, evaluations):
    # Attempts 1 and 2 start together; attempt 1's model never answers, attempt 2's does and is
    # committed; then the process is killed. Attempt 1 left no answer behind, yet it must be
    # counted at resume, or its number would be skipped and the run would end one attempt short.
    chooser = llm(openai_server, models=TWO_MODELS)
    run_seed = next(s for s in range(1000) if [chooser.pick_model((s * 1_000_003 + a) * 100) for a in (1, 2)]
                    == ["model-a", "model-b"])
    openai_server.fallback = lambda r: (slow(120) if r.body["model"] == "model-a"
                                        else ok(answer("global_policy")))
    run = tmp_path / "run"
    settings = {"evaluator.device": "cpu", "run.iterations": 6, "run.concurrency": 2, "run.seed": run_seed,
                "population.islands": 2, "run.fix_attempts": 0}
    RunStore.create(run, dump_toml(load_config(None, settings)), seed_candidate).close()
    worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, str(run), openai_server.url,
                               os.pathsep.join([str(TESTS), str(Path(__file__).resolve().parent)])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / ".git/refs/candidates/000001").exists():
        assert worker.poll() is None, worker.stderr.read().decode()
        assert time.monotonic() < deadline, "no candidate was committed"
        time.sleep(0.02)
    worker.kill()
    worker.wait()
    worker.stderr.close()

    with RunStore.open(run) as store:  # reconciles
        entries = journal(store)
        attempts = sorted(e["attempt"] for e in entries)
        assert attempts == list(range(1, store.next_attempt)) and 1 in attempts
        first = next(e for e in entries if e["attempt"] == 1)
        assert first["status"] == "interrupted" and "artifacts/000001/plan.txt" in first["artifacts"]
        assert json.loads((run / "artifacts/000001/plan.txt").read_text())["parent_ids"] == [0]
        # and the run goes on to its full count
        openai_server.fallback = lambda r: ok(answer("shrink_loads"))
        config = load_config(run / "config.toml")
        config = replace(config, run=replace(config.run, iterations=store.next_attempt, concurrency=1))
        make_controller(store, config, llm(openai_server), evaluations, seed_candidate).run()
        assert sorted(e["attempt"] for e in journal(store)) == list(range(1, config.run.iterations + 1))


def test_every_call_is_journaled_as_it_returns_and_counted_once(tmp_path, openai_server, seed_candidate,
                                                                evaluations):
    openai_server.push(ok(miss_answer(), usage=(900, 100)), ok(answer("global_policy"), usage=(1100, 150)))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 1})
    with store:
        tally = controller.run()
        lines, calls, (outcome,) = store.load_journal(), call_lines(store), journal(store)
        again = make_controller(store, load_config(store.config_path), llm(openai_server), evaluations,
                                seed_candidate)  # as a resume rebuilds the run's totals
    assert [(c["attempt"], c["call"], c["finish_reason"]) for c in calls] == [(1, 1, "stop"), (1, 2, "stop")]
    assert lines.index(calls[-1]) < lines.index(outcome)  # each call was on disk before its attempt ended
    assert outcome["calls"] == [{k: v for k, v in c.items() if k not in ("attempt", "kind", "timestamp")}
                                for c in calls]
    assert [c["prompt"] for c in calls] == ["artifacts/000001/prompt.txt", "artifacts/000001/prompt-2.txt"]
    for spent in (tally.spent, again.tally.spent):  # the outcome line repeats the calls: not counted twice
        assert (spent.prompt_tokens, spent.completion_tokens) == (2000, 250)
        assert spent.cost == pytest.approx((2000 * PRICES[0] + 250 * PRICES[1]) / 1e6)


def test_an_endpoint_failure_keeps_the_answers_own_error_and_only_that_reaches_the_model(
        tmp_path, openai_server, seed_candidate, evaluations):
    rambling = "No idea, sorry."
    with pytest.raises(ResponseError) as parsed:
        parse_response(rambling)
    openai_server.push(ok(rambling), *[server_error(500, "upstream overloaded")] * 3,  # the fix turn's 3 tries
                       ok(answer("global_policy")))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 2})
    with store:
        controller.run()
        failed, _ = journal(store)
    assert failed["status"] == "endpoint_error" and "HTTP 500: upstream overloaded" in failed["error"]
    assert (failed["answer_status"], failed["answer_error"]) == ("parse_failed", parsed.value.reason)
    assert len(failed["calls"]) == 1  # the answer that came is kept
    next_prompt = user_prompt(openai_server.chat_requests[-1])
    assert parsed.value.reason in next_prompt  # the model's real mistake is shown to it...
    assert "upstream overloaded" not in next_prompt and "HTTP 500" not in next_prompt  # ...the outage is not


def test_a_cut_off_answer_is_journaled_as_such_and_asked_to_be_shorter(tmp_path, openai_server, seed_candidate,
                                                                       evaluations):
    cut = answer("global_policy")[:200]
    openai_server.push(ok(cut, finish_reason="length"), ok(answer("global_policy")))
    store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server), evaluations,
                              **{"run.iterations": 1, "proposer.max_output_tokens": 700})
    with store:
        tally = controller.run()
        calls, (outcome,) = call_lines(store), journal(store)
    assert [c["finish_reason"] for c in calls] == ["length", "stop"] and outcome["status"] == "valid"
    assert openai_server.chat_requests[1].body["messages"][-1] == build_cut_off_message(700)
    assert (tally.calls, tally.cut_off) == (2, 1)


def test_ctrl_c_keeps_the_calls_that_finished_and_the_resumed_run_counts_them(tmp_path, openai_server,
                                                                              seed_candidate, evaluations):
    # Attempt 1's first answer misses; while its fix turn waits on the model, Ctrl-C.
    interrupted = []

    def ctrl_c_then_stall(_request):
        if not interrupted:
            interrupted.append(True)
            _thread.interrupt_main()
        return slow(30)

    openai_server.push(ok(miss_answer(), usage=(3538, 512)))
    openai_server.fallback = ctrl_c_then_stall
    cost = (3538 * PRICES[0] + 512 * PRICES[1]) / 1e6
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, whatever we inherited
    try:
        store, controller = start(tmp_path / "run", seed_candidate, llm(openai_server, retries=0), evaluations,
                                  **{"run.iterations": 3, "run.max_cost": cost})
        with store, pytest.raises(KeyboardInterrupt):
            controller.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert controller.tally.spent.prompt_tokens == 3538  # this session's summary counts the finished call

    with RunStore.open(tmp_path / "run") as store:  # the resume
        (cut_short,) = journal(store)
        assert cut_short["status"] == "interrupted" and len(cut_short["finished_calls"]) == 1
        assert (cut_short["prompt_tokens"], cut_short["completion_tokens"]) == (3538, 512)
        resumed = make_controller(store, load_config(store.config_path), llm(openai_server), evaluations,
                                  seed_candidate)
        assert resumed.tally.spent == Spend(3538, 512, pytest.approx(cost))
        tally = resumed.run()  # --max-cost counts the call: nothing more is launched
        assert (tally.stopped_by, tally.attempts, store.next_attempt) == ("max_cost", 0, 2)
