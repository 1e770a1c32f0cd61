"""Parsing model replies: what real models send must parse, anything ambiguous must say where it broke."""
from __future__ import annotations

import pytest

from harness.diff.response import DEFAULT_NAME, EditBlock, Response, ResponseError, parse_response

WELL_FORMED = """I will make packing stricter.

<NAME>
strict_packing
</NAME>

<DESCRIPTION>
Check the pack size
and drop a blank line.
</DESCRIPTION>

<DIFF>
<<<<<<< SEARCH
    per_pack = num_items // num_packs
=======
    per_pack = num_items // num_packs
    assert per_pack > 0
>>>>>>> REPLACE
<<<<<<< SEARCH
    rows = torch.arange(num_layers)

=======
>>>>>>> REPLACE
</DIFF>
"""

EXPECTED = Response(
    name="strict_packing",
    description="Check the pack size\nand drop a blank line.",
    edits=(
        EditBlock("    per_pack = num_items // num_packs\n",
                  "    per_pack = num_items // num_packs\n    assert per_pack > 0\n", 13),
        EditBlock("    rows = torch.arange(num_layers)\n\n", "", 19),
    ),
    code=None,
)


def test_well_formed_reply_yields_name_description_and_exact_block_texts() -> None:
    assert parse_response(WELL_FORMED) == EXPECTED


def test_deleting_lines_and_replacing_them_with_a_blank_line_stay_distinct() -> None:
    deleted = parse_response("<DIFF>\n<<<<<<< SEARCH\nx = 1\n=======\n>>>>>>> REPLACE\n</DIFF>")
    blanked = parse_response("<DIFF>\n<<<<<<< SEARCH\nx = 1\n=======\n\n>>>>>>> REPLACE\n</DIFF>")
    assert (deleted.edits[0].replace, blanked.edits[0].replace) == ("", "\n")


@pytest.mark.parametrize("variant", [
    pytest.param(WELL_FORMED.replace("\n", "\r\n"), id="crlf"),
    pytest.param(WELL_FORMED.replace("SEARCH\n", "SEARCH  \n").replace("=======\n", "=======\t\n")
                 .replace("REPLACE\n", "REPLACE \n"), id="trailing-spaces-on-markers"),
    pytest.param(WELL_FORMED.replace("<DIFF>\n", "<DIFF>\n```python\n").replace("</DIFF>", "```\n</DIFF>"),
                 id="fenced-whole-diff"),
    pytest.param(WELL_FORMED.replace("<<<<<<< SEARCH", "```python\n<<<<<<< SEARCH")
                 .replace("REPLACE\n", "REPLACE\n```\n"), id="fenced-blocks"),
    pytest.param(WELL_FORMED.replace("</DIFF>\n", ""), id="no-closing-diff-tag"),
    pytest.param(WELL_FORMED.replace("REPLACE\n<<<<<<<", "REPLACE\n</DIFF>\nAnd one more:\n<DIFF>\n<<<<<<<"),
                 id="two-diff-sections"),
    pytest.param(WELL_FORMED.replace("<DIFF>\n", "\n").replace("</DIFF>\n", "\n"), id="bare-blocks-without-tags"),
    pytest.param(WELL_FORMED.replace("</DIFF>\n", "").replace("REPLACE\n<<<<<<<", "REPLACE\n</DIFF>\nAlso:\n<<<<<<<"),
                 id="block-after-the-closing-tag"),
    pytest.param(WELL_FORMED.replace("I will", "A full <CODE> rewrite is not needed; I will"),
                 id="code-tag-mentioned-in-prose"),
    pytest.param(WELL_FORMED.replace("I will", "Rather than a full rewrite in <CODE>...</CODE>, I will"),
                 id="code-section-mentioned-in-prose"),
    pytest.param("\ufeff" + WELL_FORMED, id="byte-order-mark"),
])
def test_what_models_really_send_parses_to_the_same_blocks(variant: str) -> None:
    parsed = parse_response(variant)
    assert (parsed.name, parsed.description, parsed.code) == (EXPECTED.name, EXPECTED.description, None)
    assert [(e.search, e.replace) for e in parsed.edits] == [(e.search, e.replace) for e in EXPECTED.edits]


def test_fences_wrapped_inside_a_block_are_dropped_but_a_lone_fence_line_is_kept() -> None:
    paired = parse_response("<<<<<<< SEARCH\n```python\nx = 1\n```\n=======\n```\nx = 2\n```\n>>>>>>> REPLACE\n")
    lone = parse_response("<<<<<<< SEARCH\nx = 1\n```\n=======\nx = 2\n>>>>>>> REPLACE\n")
    assert (paired.edits[0].search, paired.edits[0].replace) == ("x = 1\n", "x = 2\n")
    assert lone.edits[0].search == "x = 1\n```\n"


def test_missing_name_gets_the_documented_default_and_names_are_one_line() -> None:
    body = "<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</DIFF>"
    assert parse_response(body).name == DEFAULT_NAME == "unnamed"
    assert parse_response("<NAME>  faster\n packing </NAME>" + body).name == "faster packing"


def test_code_rewrite_is_unfenced_and_ends_with_one_newline() -> None:
    parsed = parse_response("<NAME>rw</NAME>\n<CODE>\n```python\nimport torch\n\nx = 1\ny = 2\n```\n</CODE>\n")
    assert parsed == Response("rw", "", (), "import torch\n\nx = 1\ny = 2\n")


def test_code_rewrite_cut_before_its_closing_tag_is_accepted() -> None:
    assert parse_response("<CODE>\nx = 1\ny = 2\nz = 3\n\n").code == "x = 1\ny = 2\nz = 3\n"


def test_a_code_section_counts_as_a_rewrite_from_three_lines_on() -> None:
    diff = "<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</DIFF>\n"
    two, three = "<CODE>\nx = 1\ny = 2\n</CODE>\n", "<CODE>\nx = 1\ny = 2\nz = 3\n</CODE>\n"
    assert parse_response(diff + two).edits and parse_response(three).code == "x = 1\ny = 2\nz = 3\n"
    with pytest.raises(ResponseError, match="both SEARCH/REPLACE blocks and a <CODE> rewrite"):
        parse_response(diff + three)


@pytest.mark.parametrize("text, reason", [
    ("<DIFF>\n<<<<<<< SEARCH\na\n<<<<<<< SEARCH\nb\n=======\nc\n>>>>>>> REPLACE\n",
     "block 1: SEARCH marker at line 2 has no '=======' divider before the next SEARCH marker at line 4"),
    ("<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n<<<<<<< SEARCH\n",
     "block 1: no '>>>>>>> REPLACE' marker between the divider at line 4 and the next SEARCH marker at line 6"),
    ("<DIFF>\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n",
     "block 1: SEARCH marker at line 2 reaches the REPLACE marker at line 4 with no '=======' divider"),
    ("<DIFF>\n>>>>>>> REPLACE\n", "line 2: '>>>>>>> REPLACE' marker with no '<<<<<<< SEARCH' marker before it"),
    ("<DIFF>\n<<<<<<< SEARCH\nTitle\n=======\na\n=======\nb\n>>>>>>> REPLACE\n",
     "block 1 has two '=======' dividers (lines 4 and 6); a line holding only '=======' cannot appear inside "
     "SEARCH or REPLACE"),
    ("<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n",
     "block 1: no '>>>>>>> REPLACE' marker after the divider at line 4 before the reply ends; "
     "the response looks truncated"),
    ("<DIFF>\n<<<<<<< SEARCH\na\n",
     "block 1: no '=======' divider after the SEARCH marker at line 2 before the reply ends; "
     "the response looks truncated"),
    ("Use a heap.\n<NAME>heap</NAME>",
     "no change found: send SEARCH/REPLACE blocks inside <DIFF>...</DIFF> ('<<<<<<< SEARCH', '=======', "
     "'>>>>>>> REPLACE') or a full program inside <CODE>...</CODE>"),
    ("<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</DIFF>\n<CODE>\nb\nc\nd\n</CODE>",
     "the response has both SEARCH/REPLACE blocks and a <CODE> rewrite; send only one of them"),
    ("<CODE>\na\nb\nc\n</CODE>\n<CODE>\nd\ne\nf\n</CODE>", "the response has 2 <CODE> sections; send one full program"),
    ("<CODE>\n```python\n```\n</CODE>", "<CODE> holds no program (fewer than 3 lines); put the complete program "
     "between <CODE> and </CODE>, or send SEARCH/REPLACE blocks inside <DIFF>...</DIFF>"),
    ("Send the program in <CODE>...</CODE>.", "<CODE> holds no program (fewer than 3 lines); put the complete program "
     "between <CODE> and </CODE>, or send SEARCH/REPLACE blocks inside <DIFF>...</DIFF>"),
    ("<think>\nTry this:\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
     "the answer holds only reasoning text: the reasoning opened by '<think>' at line 1 never ends (the reply "
     "stopped while the model was thinking); think more briefly, or raise max_output_tokens, or serve the model "
     "with a reasoning parser (vLLM: --reasoning-parser)"),
    ("<think>\n<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</DIFF>\n</think>\n\n",
     "the answer holds only reasoning text: nothing follows the '</think>' at line 9; put the answer (NAME, "
     "DESCRIPTION, DIFF) after the reasoning, not inside it"),
])
def test_malformed_replies_name_the_block_and_line(text: str, reason: str) -> None:
    with pytest.raises(ResponseError) as caught:
        parse_response(text)
    assert caught.value.reason == reason == str(caught.value)


def test_a_heading_underline_in_prose_is_not_a_divider() -> None:
    parsed = parse_response("Plan\n=======\nSwap packs.\n" + WELL_FORMED)
    shifted_down = [EditBlock(e.search, e.replace, e.line + 3) for e in EXPECTED.edits]
    assert list(parsed.edits) == shifted_down


def test_block_numbers_run_on_across_diff_sections_and_lines_count_crlf_once() -> None:
    text = ("<DIFF>\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</DIFF>\n"
            "<DIFF>\n<<<<<<< SEARCH\nc\n").replace("\n", "\r\n")
    with pytest.raises(ResponseError, match=r"^block 2: no '=======' divider after the SEARCH marker at line 9 "):
        parse_response(text)


DRAFT = "Maybe:\n<<<<<<< SEARCH\n    rows = torch.arange(num_layers)\n=======\n    rows = None\n>>>>>>> REPLACE\nNo.\n"


def _shifted(parsed: Response, lines: int) -> None:
    """`parsed` is EXPECTED with every block `lines` further down the reply: the draft is not among them."""
    assert (parsed.name, parsed.description, parsed.code) == (EXPECTED.name, EXPECTED.description, None)
    assert list(parsed.edits) == [EditBlock(e.search, e.replace, e.line + lines) for e in EXPECTED.edits]


@pytest.mark.parametrize("opening, closing", [
    ("<think>", "</think>"), ("", "</think>"), ("<seed:think>", "</seed:think>"), ("[THINK]", "[/THINK]"),
    ("◁think▷", "◁/think▷"), ("<|channel>thought", "<channel|>"),
    ("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"),
    ("<thinking>", "</thinking>"), ("<Thought>", "</Thought>"), ("<reason>", "</reason>"),
    ("<reasoning>", "</reasoning>"), ("<|begin_of_thought|>", "<|end_of_thought|>"),
])
def test_reasoning_and_the_drafts_in_it_are_not_the_answer(opening: str, closing: str) -> None:
    """Every documented marker family; the opening may be missing (it was in the chat template)."""
    reply = f"{opening}\n{DRAFT}{closing}\n{WELL_FORMED}"
    _shifted(parse_response(reply), reply.count("\n") - WELL_FORMED.count("\n"))


def test_only_the_text_after_the_last_closing_marker_is_the_answer() -> None:
    reply = f"<think>\n{DRAFT}</think>\nWait, one more idea.\n<think>\n{DRAFT}</think>\n{WELL_FORMED}"
    _shifted(parse_response(reply), reply.count("\n") - WELL_FORMED.count("\n"))


def test_thinking_cut_off_after_a_complete_answer_is_dropped() -> None:
    assert parse_response(f"{WELL_FORMED}\n<think>\n{DRAFT}and then") == EXPECTED


def test_an_opening_marker_inside_a_line_of_prose_is_not_reasoning() -> None:
    _shifted(parse_response(f"No <think> section is needed here.\n{WELL_FORMED}"), 1)


def test_the_harmony_end_token_after_an_unclosed_rewrite_is_not_code() -> None:
    reply = ("<|channel|>analysis<|message|>plan<|end|><|start|>assistant<|channel|>final<|message|>"
             "<CODE>\na\nb\nc<|return|>")
    assert parse_response(reply).code == "a\nb\nc\n"
