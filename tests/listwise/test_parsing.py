"""Reading rankings out of free text: the final-ranking line, repairs, fallbacks, and a fuzz test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dear.listwise.parsing import CLEAN, FALLBACK, REPAIRED, parse_ranking

MARKER = "### Final Reranking:"


def test_final_line_wins_over_numbers_in_the_reasoning():
    text = (
        "Step 1. The query needs the year. Step 2. [3] gives 1879, [1] > [2] in detail.\n"
        "### Final Reranking: [2] > [3] > [1]"
    )
    parsed = parse_ranking(text, 3, marker=MARKER)
    assert parsed.order == [1, 2, 0] and parsed.status == CLEAN and parsed.issues == ()
    assert parsed.reasoning.startswith("Step 1.") and "Final Reranking" not in parsed.reasoning


def test_think_block_is_reasoning_and_answer_follows_it():
    parsed = parse_ranking(
        "<think>[1] > [2] > [3] looks wrong</think>\n### Final Reranking: [3] > [1] > [2]",
        3,
        marker=MARKER,
    )
    assert parsed.order == [2, 0, 1] and parsed.status == CLEAN
    assert parsed.reasoning == "[1] > [2] > [3] looks wrong"


def test_without_the_line_the_last_run_is_used_and_marked_repaired():
    parsed = parse_ranking("I compare [1] > [3] first. Overall: [2] > [1] > [3]", 3, marker=MARKER)
    assert parsed.order == [1, 0, 2] and parsed.status == REPAIRED
    assert "no final-ranking line" in parsed.issues


def test_prompts_without_a_marker_read_the_run_cleanly_zero_based():
    parsed = parse_ranking("[4] > [1] > [0] > [3] > [2]", 5, first_id=0)
    assert parsed.order == [4, 1, 0, 3, 2] and parsed.status == CLEAN


def test_duplicates_unknown_ids_and_missing_ids_are_repaired_in_previous_order():
    parsed = parse_ranking(f"{MARKER} [4] > [2] > [4] > [9] > [0]", 5, marker=MARKER)
    # [4],[2] kept; repeated [4], out-of-range [9] and [0] (ids start at 1) dropped; 0, 2, 4 appended.
    assert parsed.order == [3, 1, 0, 2, 4] and parsed.status == REPAIRED
    assert set(parsed.issues) == {"2 out-of-range id(s)", "1 duplicate id(s)", "3 missing id(s)"}


def test_marker_phrase_in_prose_is_not_the_final_line():
    text = f"{MARKER} [2] > [1] > [3]\nThe final reranking above puts [2] first."
    assert parse_ranking(text, 3, marker=MARKER).order == [1, 0, 2]


def test_unclosed_think_falls_back_even_with_runs_inside():
    parsed = parse_ranking(
        "<think>Compare: [3] > [1] > [2] and then", 3, marker=MARKER, truncated=True
    )
    assert parsed.order == [0, 1, 2] and parsed.status == FALLBACK
    assert {"unclosed <think>", "cut at the token limit"} <= set(parsed.issues)


def test_generation_cut_before_the_final_line_falls_back():
    parsed = parse_ranking("Step 2. [3] > [1] covers it, then", 3, marker=MARKER, truncated=True)
    assert parsed.status == FALLBACK and parsed.order == [0, 1, 2]


def test_generation_cut_inside_the_final_line_keeps_what_was_written():
    parsed = parse_ranking(f"reasoning\n{MARKER} [3] > [1] > [", 3, marker=MARKER, truncated=True)
    assert parsed.order == [2, 0, 1] and parsed.status == REPAIRED


@pytest.mark.parametrize(
    "text, order",
    [
        (f"{MARKER.lower()} [2]>[1]>[3]", [1, 0, 2]),
        ("### Final Reranking:\n[2] > [3] > [1]", [1, 2, 0]),
        ("final reranking: 3 > 1 > 2", [2, 0, 1]),
        ("**Final Reranking**: [2], [3], [1]", [1, 2, 0]),
    ],
)
def test_marker_spelling_variants(text, order):
    assert parse_ranking(text, 3, marker=MARKER).order == order


def test_bare_number_run_is_a_repair():
    parsed = parse_ranking("2 > 3 > 1", 3)
    assert (
        parsed.order == [1, 2, 0]
        and parsed.status == REPAIRED
        and "ranking without brackets" in parsed.issues
    )


@pytest.mark.parametrize("text", ["", "no idea", "[1]", "[99999999999999999999] > [2]", "٣ > ١"])
def test_nothing_usable_keeps_the_previous_order(text):
    parsed = parse_ranking(text, 4, marker=MARKER)
    assert sorted(parsed.order) == [0, 1, 2, 3]


def test_numbered_list_after_the_marker_is_read_without_its_enumerators():
    parsed = parse_ranking(f"{MARKER}\n1. [3]\n2. [1]\n3) [2]\n", 3, marker=MARKER)
    assert parsed.order == [2, 0, 1] and parsed.status == CLEAN


def test_final_line_without_a_ranking_falls_back_and_a_later_run_is_not_read():
    parsed = parse_ranking(f"{MARKER} 2023 was decisive. [2] > [1] > [3]", 3, marker=MARKER)
    assert parsed.status == FALLBACK and parsed.order == [0, 1, 2]
    assert "final-ranking line lists no ranking" in parsed.issues


def test_a_number_on_the_next_line_is_not_an_id():
    for marker in (MARKER, None):
        text = (
            "" if marker is None else f"{MARKER} "
        ) + "[2] > [1]\n5 of the passages are off topic."
        parsed = parse_ranking(text, 5, marker=marker)
        # 5 is appended in its previous place, not promoted
        assert parsed.order == [1, 0, 2, 3, 4], marker


def test_without_a_marker_an_explanation_after_the_answer_is_not_the_answer():
    parsed = parse_ranking("[2] > [3] > [1]\nI put [1] > [3] lower because ...", 3)
    assert parsed.order == [1, 2, 0]
    preamble = parse_ranking("Comparing [1] > [3] first, the ranking is [3] > [2] > [1].", 3)
    assert preamble.order == [2, 1, 0]  # the longest run, not the first


@pytest.mark.parametrize("marker", [MARKER, None])
def test_less_than_runs_are_worst_first(marker):
    text = ("" if marker is None else f"{MARKER} ") + "[3] < [1] < [2]"
    parsed = parse_ranking(text, 3, marker=marker)
    assert parsed.order == [1, 0, 2] and parsed.status == REPAIRED
    assert "ranking written worst first with '<'" in parsed.issues


def test_mixed_separators_are_no_ranking():
    parsed = parse_ranking(f"{MARKER} [3] < [1] > [2]", 3, marker=MARKER)
    assert parsed.status == FALLBACK and "ranking mixes '>' and '<'" in parsed.issues


TEN_MB = 10_000_000


# Shapes that take minutes under a backtracking pattern (the old one needed 10.8 s for 32 KB of
# the first). Asserted: the right answer; the size makes any quadratic regression hang the suite.
@pytest.mark.parametrize(
    "text, marker, order, status",
    [
        (f"{MARKER} [2]" + " " * TEN_MB + "x", MARKER, [1, 0, 2], REPAIRED),
        (f"{MARKER} [2] >" + "\n" * TEN_MB + "x", MARKER, [1, 0, 2], REPAIRED),
        (f"{MARKER}" + " " * TEN_MB + "[3] > [1] > [2]", MARKER, [2, 0, 1], CLEAN),
        ("[" * TEN_MB, None, [0, 1, 2], FALLBACK),
        ("1 > " * (TEN_MB // 4) + "]", None, [0, 1, 2], REPAIRED),
        ("[3] > [1] > [2]" + " > [1]" * (TEN_MB // 6), None, [2, 0, 1], REPAIRED),
        (
            "final reranking " * (TEN_MB // 16) + f"\n{MARKER} [2] > [3] > [1]",
            MARKER,
            [1, 2, 0],
            CLEAN,
        ),
        ("#" * TEN_MB + " Final Reranking: [2] > [1] > [3]", MARKER, [1, 0, 2], CLEAN),
        ("<think>" * (TEN_MB // 7) + "</think>[2] > [1] > [3]", None, [1, 0, 2], CLEAN),
        ("1" * TEN_MB + " > 2", None, [0, 1, 2], FALLBACK),  # a 10-million-digit number is no id
    ],
)
def test_ten_megabytes_of_degenerate_output_parse_correctly(text, marker, order, status):
    parsed = parse_ranking(text, 3, marker=marker)
    assert parsed.order == order and parsed.status == status


# Fragments that exercise every branch: markers, think tags, brackets, separators, huge and
# non-ASCII digits, newlines.
FRAGMENTS = st.sampled_from(
    [
        "### Final Reranking:",
        "final reranking",
        "#",
        "[",
        "]",
        ">",
        " > ",
        ",",
        "<think>",
        "</think>",
        "\n",
        "[1]",
        "[2]",
        "[3]",
        "[0]",
        "[20]",
        "[ 7 ]",
        "12345678901",
        "٣",
        "１",
        "Step 1.",
        " ",
        "[-1]",
        "[1.5]",
    ]
)
ADVERSARIAL = st.lists(
    st.one_of(FRAGMENTS, st.integers(0, 30).map(str), st.text(max_size=5)), max_size=60
).map("".join)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(max_size=300), ADVERSARIAL),
    n=st.integers(0, 25),
    first_id=st.sampled_from([0, 1]),
    marker=st.sampled_from([MARKER, None]),
    truncated=st.booleans(),
)
def test_fuzz_always_a_permutation_never_raises(text, n, first_id, marker, truncated):
    parsed = parse_ranking(text, n, first_id=first_id, marker=marker, truncated=truncated)
    assert sorted(parsed.order) == list(range(n))
    assert parsed.status in (CLEAN, REPAIRED, FALLBACK)
    assert (parsed.status == CLEAN) == (not parsed.issues)
