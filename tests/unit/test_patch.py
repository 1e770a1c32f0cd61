"""Applying responses: every unambiguous edit applies, everything else is refused with a precise reason.

The corpus in tests/responses/ holds replies of the kinds real models send, each with its exact
expected outcome; the unit tests below pin the rules the corpus does not isolate.
"""
from __future__ import annotations

import codecs
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from paths import RESPONSES, SHARED_SEEDS

from harness.diff.errors import ProgramError
from harness.diff.guards import Region, find_regions
from harness.diff.patch import BlockOutcome, PatchResult, apply_edits
from harness.diff.response import EditBlock, Response, ResponseError, parse_response

CORPUS = RESPONSES
SEEDS = SHARED_SEEDS
BASE = (CORPUS / "base_program.py").read_text()
HEADER = "def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):\n"
UNMARKED = f"import torch\n\n\n{HEADER}    x = 1\n    return x\n"


@dataclass(frozen=True)
class Expect:
    """Per-block outcomes as 'exact' / 'tolerant(what)' / 'failed'; `error` is a substring of the
    parse reason or of PatchResult.error. A case with no error must produce `<output>.expected.py`."""

    blocks: tuple[str, ...] = ()
    error: str | None = None
    parse_error: bool = False
    output: str | None = None  # expected-output file stem when it is another case's

    def expected_output(self, case: str) -> Path:
        return CORPUS / f"{self.output or case}.expected.py"


EXPECTED = {
    "wellformed_two_blocks": Expect(("exact", "exact")),
    "wellformed_three_blocks": Expect(("exact",) * 3),
    "crlf": Expect(("exact",) * 3, output="wellformed_three_blocks"),
    "marker_trailing_spaces": Expect(("exact",) * 3, output="wellformed_three_blocks"),
    "missing_name": Expect(("exact",)),
    "bare_blocks": Expect(("exact",)),
    "fenced_blocks": Expect(("exact",)),
    "fenced_whole_reply": Expect(("exact",)),
    "fence_inside_block": Expect(("exact",)),
    "missing_closing_diff": Expect(("exact",)),
    "several_diff_sections": Expect(("exact", "exact")),
    "marker_as_context": Expect(("exact",)),
    "chained_blocks": Expect(("exact", "exact")),
    "delete_lines": Expect(("exact",)),
    "trailing_whitespace": Expect(("tolerant(trailing whitespace)",)),
    "blank_line_drift": Expect(("tolerant(blank lines)",)),
    "indent_under": Expect(("tolerant(indentation +4 spaces)",)),
    "indent_over": Expect(("tolerant(indentation -4 spaces)",)),
    "code_rewrite": Expect(),
    "indent_over_replace_too_shallow": Expect(("failed",), "block 1 failed: SEARCH matches line 38 once indented -8 "
                                              "spaces, but REPLACE line 2 '    # float32 on the CPU' is indented"),
    "ambiguous": Expect(("failed",), "block 1 failed: SEARCH matches 2 places (lines 7, 39); add neighbouring lines"),
    "not_found": Expect(("failed",), "nearest program region: lines 27-29 (similarity 0.99); first difference: "
                        "SEARCH line 2 '            open_packs = [p for p in range(num_packs) if counts[p] <= "
                        "per_pack]' vs program line 28 '            open_packs = [p for p in range(num_packs) if "
                        "counts[p] < per_pack]'"),
    "empty_search": Expect(("failed",), "block 1 failed: SEARCH is empty; quote the exact program lines to change"),
    "partial_failure": Expect(("exact", "failed", "exact"), "block 2 failed: SEARCH not found; nearest program "
                              "region: lines 25-25 (similarity 0.90); first difference: SEARCH line 1 "
                              "'    totals = [0] * num_packs'"),
    "outside_block": Expect(("failed",), "block 1 failed at line 2: inserts lines before line 2, outside the EVOLVE "
                            "block (lines 4-46); edit only between the markers"),
    "edits_marker": Expect(("failed",), "changes line 46 '# EVOLVE-BLOCK-END', an EVOLVE marker; leave the markers"),
    "syntax_error": Expect(("exact",), "result does not parse: line 22: '(' was never closed "
                           "('    per_pack = max(1, (num_items // num_packs)') (line 22 was written by block 1)"),
    "signature_change": Expect(("exact",), "rebalance_experts signature changed from (weight, num_replicas, "
                               "num_groups, num_nodes, num_gpus) to (weight, num_replicas, num_groups, num_nodes, "
                               "num_gpus, seed)"),
    "entry_point_renamed": Expect(("exact",), "result no longer defines a top-level function rebalance_experts("),
    "noop": Expect(("exact",), "result is identical to the parent"),
    "comment_only": Expect(("exact",), "result compiles to the same code as the parent (only comments or formatting"),
    "code_rewrite_outside": Expect((), "the <CODE> rewrite adds 'import numpy as np' before program line 3, outside "
                                   "the EVOLVE blocks"),
    "truncated": Expect(error="block 1: no '>>>>>>> REPLACE' marker after the divider at line 6 before the reply ends; "
                        "the response looks truncated", parse_error=True),
    "missing_divider": Expect(error="block 1: SEARCH marker at line 4 has no '=======' divider before the next "
                              "SEARCH marker at line 7", parse_error=True),
    "two_dividers": Expect(error="block 1 has two '=======' dividers (lines 6 and 10)", parse_error=True),
    "prose_only": Expect(error="no change found", parse_error=True),
    "diff_and_code": Expect(error="both SEARCH/REPLACE blocks and a <CODE> rewrite", parse_error=True),
    # Reasoning sent in the content: only the answer after it applies, never a draft inside it.
    "think_draft_elsewhere": Expect(("exact",)),
    "think_draft_same_lines": Expect(("exact",), output="think_draft_elsewhere"),
    "think_closing_only": Expect(("exact",), output="think_draft_elsewhere"),
    "harmony_channels": Expect(("exact",), output="think_draft_elsewhere"),
    "think_unclosed": Expect(error="the answer holds only reasoning text: the reasoning opened by '<think>' at line 1 "
                             "never ends", parse_error=True),
    "think_only": Expect(error="the answer holds only reasoning text: nothing follows the '</think>' at line 14",
                         parse_error=True),
    "bom": Expect(("exact",), output="think_draft_elsewhere"),
    "code_mentioned_in_prose": Expect(("exact",), output="think_draft_elsewhere"),
}


def _reply(*blocks: tuple[str, str]) -> Response:
    return Response("t", "", tuple(EditBlock(search, replace, 1) for search, replace in blocks), None)


def _label(outcome: BlockOutcome) -> str:
    return f"tolerant({outcome.detail})" if outcome.status == "tolerant" else outcome.status


def test_every_corpus_reply_has_an_expectation_and_every_output_file_a_case() -> None:
    assert len(EXPECTED) >= 25
    assert {path.stem for path in CORPUS.glob("*.txt")} == set(EXPECTED)
    outputs = {path.name.removesuffix(".expected.py") for path in CORPUS.glob("*.expected.py")}
    assert outputs == {e.output or case for case, e in EXPECTED.items() if e.error is None}
    # Bytes an editor or a git setting could silently "fix", which would void those cases:
    assert (CORPUS / "crlf.txt").read_bytes().count(b"\r\n") > 20
    assert b"):   \n" in (CORPUS / "trailing_whitespace.txt").read_bytes()
    assert b"<<<<<<< SEARCH   \n" in (CORPUS / "marker_trailing_spaces.txt").read_bytes()
    assert (CORPUS / "bom.txt").read_bytes().startswith(codecs.BOM_UTF8)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_corpus_reply_has_its_exact_expected_outcome(case: str) -> None:
    expect = EXPECTED[case]
    text = (CORPUS / f"{case}.txt").read_bytes().decode()
    if expect.parse_error:
        with pytest.raises(ResponseError) as caught:
            parse_response(text)
        assert expect.error in caught.value.reason
        return
    result = apply_edits(BASE, parse_response(text))
    assert tuple(_label(outcome) for outcome in result.outcomes) == expect.blocks
    if expect.error is None:
        assert (result.ok, result.error) == (True, None)
        assert result.text == expect.expected_output(case).read_text()
    else:
        assert (result.ok, result.text) == (False, None)
        assert expect.error in result.error


@pytest.mark.skipif(not SEEDS.is_dir(),
                    reason=f"seed responses not found at {SEEDS} (CI checks ../shared out beside the clone)")
@pytest.mark.parametrize("seed, name, description, blocks", [
    ("000_e7a61ee96ee1b807.txt", "global_swap_refinement", "Upgrade the local search refinement step from", 3),
    ("001_b6a996e0c6584613.txt", "optimize_balanced_packing_with_swap", "Optimizes `balanced_packing` by:\n1.", 1),
])
def test_real_seed_replies_parse_and_apply_exactly_to_a_program_built_from_their_searches(
        seed: str, name: str, description: str, blocks: int) -> None:
    response = parse_response((SEEDS / seed).read_text())
    assert (response.name, len(response.edits), response.code) == (name, blocks, None)
    assert response.description.startswith(description)
    # Each SEARCH becomes part of a compilable program: indented fragments get a function header.
    parts = ["import torch\n", "# EVOLVE-BLOCK-START\n"]
    for number, edit in enumerate(response.edits):
        parts.append(edit.search if not edit.search.startswith(" ") else f"def host_{number}():\n{edit.search}")
    parts.append(f"{HEADER}    return None\n")
    program = "\n".join(parts) + "# EVOLVE-BLOCK-END\n"
    result = apply_edits(program, response)
    assert result.ok, result.summary()
    assert [outcome.status for outcome in result.outcomes] == ["exact"] * blocks
    for edit in response.edits:
        assert edit.replace in result.text


def test_an_unmarked_program_is_editable_everywhere() -> None:
    result = apply_edits(UNMARKED, _reply(("import torch\n", "import math\nimport torch\n")))
    assert result.ok and result.text == "import math\n" + UNMARKED


def test_edits_between_two_regions_are_refused_naming_both() -> None:
    program = ("# EVOLVE-BLOCK-START\na = 1\n# EVOLVE-BLOCK-END\nb = 2\n"
               "# EVOLVE-BLOCK-START\nc = 3\n# EVOLVE-BLOCK-END\n")
    assert apply_edits(program, _reply(("c = 3\n", "c = 4\n"))).ok
    refused = apply_edits(program, _reply(("b = 2\n", "b = 5\n")))
    assert refused.error == ("block 1 failed at line 4: changes line 4 'b = 2', outside the EVOLVE blocks "
                             "(lines 1-3, 5-7); edit only between the markers")


def test_only_comment_lines_are_markers() -> None:
    program = ('# EVOLVE-BLOCK-START (see EVOLVE-BLOCK-END below)\nNOTE = "# EVOLVE-BLOCK-END"\nx = 1\n'
               "# EVOLVE-BLOCK-END\ny = 2\n")
    assert find_regions(program.splitlines()) == (Region(0, 3),)
    assert find_regions(["x = 1"]) == (Region(-1, 1),)  # unmarked: one region around everything


def test_a_block_that_writes_a_marker_is_refused() -> None:
    result = apply_edits(BASE, _reply(("    return pack_of\n", "    return pack_of\n# EVOLVE-BLOCK-END\n")))
    assert "adds the EVOLVE marker line '# EVOLVE-BLOCK-END'; leave the markers as they are" in result.error


def test_broken_markers_in_the_program_are_the_users_error() -> None:
    with pytest.raises(ProgramError, match=r"^program: EVOLVE-BLOCK-START at line 1 has no EVOLVE-BLOCK-END after it;"):
        apply_edits("# EVOLVE-BLOCK-START\nx = 1\n", _reply(("x = 1\n", "x = 2\n")))


def test_an_exact_match_wins_over_a_copy_that_differs_only_by_indentation() -> None:
    program = f"x = 1\n\n\n{HEADER}    x = 1\n"
    result = apply_edits(program, _reply(("x = 1\n", "x = 2\n")))
    assert [_label(o) for o in result.outcomes] == ["exact"] and result.text.startswith("x = 2\n")


def test_a_tolerant_match_in_two_places_is_ambiguous_and_says_what_was_ignored() -> None:
    program = "def f():\n    y = 1\n\n\ndef g():\n    y = 1\n"
    result = apply_edits(program, _reply(("y = 1\n", "y = 2\n")))
    assert result.error == ("block 1 failed: SEARCH is not in the program as written, and matches 2 places "
                            "(lines 2, 6) when ignoring indentation; copy the lines exactly, with enough "
                            "neighbours to match one place")


def test_the_syntax_error_is_pinned_on_the_block_that_wrote_the_line() -> None:
    harmless = ("    per_pack = num_items // num_packs\n", "    per_pack = num_items // num_packs\n")
    result = apply_edits(BASE, _reply(harmless, ("    return pack_of\n", "    return pack_of\n  oops = 1\n")))
    assert result.error.startswith("result does not parse: line 34: unindent does not match any outer indentation")
    assert result.error.endswith("(line 34 was written by block 2)")


def test_a_change_of_constant_type_is_a_real_change_but_reflowing_is_not() -> None:
    float_one = apply_edits(UNMARKED, _reply(("    x = 1\n", "    x = 1.0\n")))
    reflowed = apply_edits(UNMARKED, _reply(("    x = 1\n", "    x = (\n        1\n    )  # one\n")))
    assert float_one.ok
    assert reflowed.error.startswith("result compiles to the same code as the parent")


def test_defaults_may_change_but_parameter_kinds_may_not() -> None:
    with_default = HEADER.replace("num_gpus)", "num_gpus=8)")
    keyword_only = HEADER.replace("num_nodes, num_gpus", "num_nodes, *, num_gpus")
    assert apply_edits(UNMARKED, _reply((HEADER, with_default))).ok
    assert apply_edits(UNMARKED, _reply((HEADER, keyword_only))).error == (
        "rebalance_experts signature changed from (weight, num_replicas, num_groups, num_nodes, num_gpus) to "
        "(weight, num_replicas, num_groups, num_nodes, *, num_gpus); keep the parameter list")


def test_crlf_programs_are_patched_in_lf() -> None:
    result = apply_edits(UNMARKED.replace("\n", "\r\n"), _reply(("    x = 1\n", "    x = 2\n")))
    assert result.text == UNMARKED.replace("x = 1", "x = 2")


def test_a_rewrite_keeps_the_parents_outside_code_byte_for_byte() -> None:
    rewrite = BASE.replace("    per_pack = num_items // num_packs", "    per_pack = max(1, num_items // num_packs)")
    sloppy = rewrite.replace("import torch\n", "import torch   \n").rstrip("\n") + "\n\n\n"  # whitespace drift outside
    result = apply_edits(BASE, Response("r", "", (), sloppy))
    assert result.ok and result.rewrite and result.text == rewrite


@pytest.mark.parametrize("rewrite, error", [
    ("import torch\n", "the <CODE> rewrite has no EVOLVE-BLOCK markers; keep the markers and the code outside them"),
    (BASE.replace("# EVOLVE-BLOCK-END\n", "# EVOLVE-BLOCK-END\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n"),
     "the <CODE> rewrite has 2 EVOLVE blocks, the program has 1; keep every marker and the code outside them"),
    (BASE.replace("# EVOLVE-BLOCK-END\n", ""),
     "the <CODE> rewrite: EVOLVE-BLOCK-START at line 4 has no EVOLVE-BLOCK-END after it"),
    (BASE.replace("    return log2phy\n", ""),
     "the <CODE> rewrite drops program line 58 '    return log2phy', outside the EVOLVE blocks; "
     "keep that code unchanged"),
])
def test_a_rewrite_that_touches_outside_code_or_markers_is_refused(rewrite: str, error: str) -> None:
    result = apply_edits(BASE, Response("r", "", (), rewrite))
    assert (result.ok, result.error, result.outcomes) == (False, error, ())


def test_summary_and_dict_report_every_block() -> None:
    result = apply_edits(BASE, parse_response((CORPUS / "partial_failure.txt").read_text()))
    lines = result.summary().splitlines()
    assert lines[0] == "not applied: 1 of 3 block(s) failed"
    assert lines[1:] == [outcome.render() for outcome in result.outcomes]
    assert lines[1] == "block 1: exact at line 22" and lines[3] == "block 3: exact at line 33"
    assert [o["status"] for o in result.to_dict()["outcomes"]] == ["exact", "failed", "exact"]
    tolerant = apply_edits(BASE, parse_response((CORPUS / "indent_under.txt").read_text()))
    assert tolerant.summary() == "applied 1 block(s): 1 tolerant\nblock 1: tolerant (indentation +4 spaces) at line 12"
    rewrite = PatchResult(True, "x\n", (), None, rewrite=True)
    assert rewrite.summary() == "applied: full rewrite (<CODE>)"


def test_a_one_line_typo_is_located_in_a_long_program() -> None:
    body = "".join(f"    value_{i} = compute({i}, scale={i % 7})\n" for i in range(1000))
    program = HEADER + body
    result = apply_edits(program, _reply(("    value_612 = compute(612, scale=4)\n", "    value_612 = 0\n")))
    assert re.search(r"SEARCH not found; nearest program region: lines 614-614 \(similarity 0\.9\d\); "
                     r"first difference: SEARCH line 1 '    value_612 = compute\(612, scale=4\)' vs program line 614 "
                     r"'    value_612 = compute\(612, scale=3\)'; copy the SEARCH lines", result.error)


def test_a_stale_search_is_located_by_its_words_not_by_a_line_common_to_every_function() -> None:
    program = "".join(f"def f_{i}(x):\n    y = x * {i}\n    return y\n" for i in range(200))
    program += f"{HEADER}    return f_0(1)\n"
    stale = "def f_77(z):\n    y = z * 77\n    return y\n"
    result = apply_edits(program, _reply((stale, "def f_77(z):\n    return z\n")))
    assert "nearest program region: lines 232-234 (similarity 0.94)" in result.error
    assert "first difference: SEARCH line 1 'def f_77(z):' vs program line 232 'def f_77(x):'" in result.error


def test_a_search_quoting_code_that_is_not_there_is_told_so_without_a_misleading_difference() -> None:
    imagined = "    # Configuration\n    candidates = sorted(weight.shape, reverse=True)\n    refine = 16\n"
    result = apply_edits(BASE, _reply((imagined, "    refine = 32\n")))
    assert re.fullmatch(r"block 1 failed: SEARCH not found; no program region resembles it \(the closest, lines "
                        r"\d+-\d+, has similarity 0\.[0-4]\d\); SEARCH must quote the current program, not an "
                        r"older or imagined version", result.error)


def test_damaged_replies_never_crash_and_a_success_never_touches_code_outside_the_block() -> None:
    """Corpus replies with lines deleted, duplicated, re-indented or cut (seeded): parsing raises only
    ResponseError, applying never raises, and whatever applies compiles with the outside intact."""
    rng = random.Random(7)
    replies = [path.read_text() for path in sorted(CORPUS.glob("*.txt"))]
    head, tail = BASE.split("# EVOLVE-BLOCK-START\n")[0], BASE.split("# EVOLVE-BLOCK-END\n")[1]
    applied = 0
    for _ in range(300):
        lines = rng.choice(replies).split("\n")
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(lines))
            damage = [[], [lines[i], rng.choice(lines)], [" " * rng.randint(0, 8) + lines[i].strip()],
                      [lines[i][:rng.randrange(len(lines[i]) + 1)]]]
            lines[i:i + 1] = rng.choice(damage)
        try:
            result = apply_edits(BASE, parse_response("\n".join(lines)))
        except ResponseError:
            continue
        if result.ok:
            applied += 1
            compile(result.text, "<child>", "exec")
            assert result.text.startswith(head + "# EVOLVE-BLOCK-START\n")
            assert result.text.endswith("# EVOLVE-BLOCK-END\n" + tail)
    assert applied > 30  # the damage left enough replies applicable for the check to mean something
