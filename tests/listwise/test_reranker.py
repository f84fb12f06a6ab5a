"""Prompts, sliding-window spans and the listwise stage, with a scripted back end."""

from __future__ import annotations

import random
import re

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.data.contract import Candidate, Query, Ranking
from dear.errors import DataError
from dear.listwise.backends import Generation
from dear.listwise.prompts import ListwisePrompt, fit_window
from dear.listwise.reranker import ListwiseReranker
from dear.listwise.window import window_spans


def prompt(name: str, **overrides) -> ListwisePrompt:
    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "prompt" / f"{name}.yaml"), overrides)
    return instantiate(cfg)


class ScriptedBackend:
    """Answers each window by sorting its passages on the hidden grade ``g=<n>`` in their text."""

    def __init__(self, prompt_limit=None, reply=None):
        self.calls: list[int] = []
        self.prompt_limit = prompt_limit
        self.reply = reply or self.sort_by_grade

    @staticmethod
    def sort_by_grade(ids_and_grades: list[tuple[int, int]]) -> str:
        best = sorted(ids_and_grades, key=lambda x: -x[1])
        return "Reasoning: [9] mentioned.\n### Final Reranking: " + " > ".join(
            f"[{i}]" for i, _ in best
        )

    def count_tokens(self, messages, chat=True):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, conversations, chat=True, desc=""):
        self.calls.append(len(conversations))
        out = []
        for messages in conversations:
            turns = [m["content"] for m in messages if re.match(r"\[\d+\] ", m["content"])]
            graded = [
                (int(re.match(r"\[(\d+)\]", t).group(1)), int(re.search(r"g=(\d+)", t).group(1)))
                for t in turns
            ]
            out.append(
                Generation(
                    self.reply(graded),
                    prompt_tokens=self.count_tokens(messages),
                    completion_tokens=7,
                )
            )
        return out


def graded_ranking(qid: str, grades: list[int]) -> Ranking:
    return Ranking(
        Query(qid, "what"),
        [Candidate(f"{qid}-{i}", f"passage g={g} text") for i, g in enumerate(grades)],
    )


@pytest.mark.parametrize(
    "k, size, step, spans",
    [
        (25, 20, 10, [(5, 25), (0, 20)]),
        (20, 20, 10, [(0, 20)]),
        (30, 20, 10, [(10, 30), (0, 20)]),
        (
            100,
            20,
            10,
            [
                (80, 100),
                (70, 90),
                (60, 80),
                (50, 70),
                (40, 60),
                (30, 50),
                (20, 40),
                (10, 30),
                (0, 20),
            ],
        ),
        (7, 20, 10, [(0, 7)]),
        (13, 4, 3, [(9, 13), (6, 10), (3, 7), (0, 4)]),
        (1, 20, 10, []),
    ],
)
def test_window_spans_always_end_on_the_top(k, size, step, spans):
    assert window_spans(k, size, step) == spans


@pytest.mark.parametrize(
    "field, value",
    [("step", 1.5), ("step", "10"), ("window_size", 20.0), ("step", True), ("top_k", 2.5)],
)
def test_window_settings_must_be_integers_checked_at_construction(field, value):
    from dear.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=rf"^listwise\.{field}: expected an integer, found {re.escape(repr(value))}$",
    ):
        ListwiseReranker(ScriptedBackend(), prompt("dear"), **{field: value})


@pytest.mark.parametrize("size, step", [(20, 0), (20, 21), (1, 1)])
def test_window_settings_that_leave_gaps_are_refused(size, step):
    with pytest.raises(ValueError):
        window_spans(30, size, step)


def test_k25_window20_step10_reranks_ranks_1_to_20():
    """The RankGPT-era loop would stop after ranks 6-25; the last window must cover ranks 1-20."""
    grades = list(range(25))  # input order is worst first: the best passage starts at rank 25
    out = ListwiseReranker(ScriptedBackend(), prompt("dear"), 20, 10).rerank(
        [graded_ranking("q", grades)]
    )[0]
    assert [c.docid for c in out.candidates[:10]] == [f"q-{i}" for i in range(24, 14, -1)]
    assert out.meta["windows"][-1]["ranks"] == [1, 20]


def test_one_pass_brings_the_global_top_to_the_front_for_every_query():
    rng = random.Random(0)
    rankings = [graded_ranking(f"q{n}", rng.sample(range(1000), 100)) for n in range(3)]
    backend = ScriptedBackend()
    reranker = ListwiseReranker(backend, prompt("dear"), 20, 10)
    out = reranker.rerank(rankings)
    assert backend.calls == [3] * 9  # one call per window step, all three queries batched together
    for before, after in zip(rankings, out):
        grade = {c.docid: int(c.text.split("g=")[1].split()[0]) for c in before.candidates}
        top10 = sorted(grade, key=lambda d: -grade[d])[:10]
        assert [c.docid for c in after.candidates[:10]] == top10
        assert sorted(c.docid for c in after.candidates) == sorted(grade)
        assert [c.score for c in after.candidates] == [float(100 - i) for i in range(100)]
    assert reranker.stage_metrics() == {
        "parse_clean": 1.0,
        "parse_repaired": 0.0,
        "parse_fallback": 0.0,
    }
    assert out[0].meta["justification"] == "Reasoning: [9] mentioned."


def test_parse_status_per_query_is_the_worst_window_and_rates_are_reported():
    replies = iter(["### Final Reranking: [2] > [1] > [3]", "[2] > [1]", "gibberish"])
    backend = ScriptedBackend(reply=lambda graded: next(replies))
    reranker = ListwiseReranker(backend, prompt("dear"), 3, 2)
    out = reranker.rerank([graded_ranking(qid, [1, 2, 3]) for qid in "abc"])
    assert [r.meta["parse"] for r in out] == ["clean", "repaired", "fallback"]
    assert [c.docid for c in out[2].candidates] == ["c-0", "c-1", "c-2"]  # fallback keeps the order
    assert reranker.stage_metrics() == pytest.approx(
        {"parse_clean": 1 / 3, "parse_repaired": 1 / 3, "parse_fallback": 1 / 3}
    )
    assert out[1].meta["windows"][0]["issues"] == ["no final-ranking line", "1 missing id(s)"]


def test_model_card_prompt_is_single_turn_zero_based_raw_text():
    p = prompt("model_card")
    msgs = p.messages("who?", ["alpha beta", "gamma"], 300)
    assert len(msgs) == 1 and not p.chat_template and p.marker is None
    assert "\n\n[0] alpha beta\n[1] gamma\n\nSearch Query: who?." in msgs[0]["content"]
    assert msgs[0]["content"].endswith("Output the ranking as a list of numbers.")
    assert p.ranking_line([1, 0]) == "[1] > [0]"


def test_dear_prompt_is_the_multi_turn_exchange_with_the_three_steps():
    p = prompt("dear")
    msgs = p.messages("who?", ["one two three", "four"], 2)
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[0]["content"].startswith("You are RankLLM")
    assert msgs[3]["content"] == "[1] one two" and msgs[4]["content"] == "Received passage [1]."
    assert all(f"Step {i}." in msgs[-1]["content"] for i in (1, 2, 3))
    assert msgs[-1]["content"].endswith(
        "Output format strictly: [2] > [1] > [3] ... Only output the ranking "
        "using identifiers; no explanations."
    )
    assert (
        "### Final Reranking: [2] > [1]"
        in prompt("dear_cot").messages("who?", ["a"], 2)[-1]["content"]
    )


def test_dear_prompt_drops_rank_llm_empty_title_and_the_card_cuts_characters_verbatim():
    msgs = prompt("dear").messages("q", ["Title: Content:  alpha  beta\ngamma delta"], 3)
    assert msgs[3]["content"] == "[1] alpha beta gamma"
    text = "x" * 250 + "  two\nspaces " + "y" * 100
    card = prompt("model_card").messages("q", [text], None)[0]["content"]
    assert f"[0] {text[:300]}\n\nSearch Query" in card
    with pytest.raises(Exception, match="max_words must be a positive integer"):
        prompt("dear", max_words=None)


def test_auto_budget_fits_the_context_and_a_fixed_budget_that_overflows_is_an_error():
    texts = ["word " * 400] * 5
    count = ScriptedBackend().count_tokens
    messages, words = fit_window(prompt("dear", max_words="auto"), "q", texts, count, limit=600)
    assert count(messages) <= 600 and 0 < words < 300
    wide, wide_words = fit_window(prompt("dear", max_words="auto"), "q", texts, count, limit=10_000)
    assert wide_words == 300 and count(wide) <= 10_000
    with pytest.raises(DataError, match="prompt.max_words=300"):
        fit_window(prompt("dear"), "q", texts, count, limit=600)


def test_auto_budget_from_per_passage_counts_is_the_largest_that_fits():
    texts = [" ".join(f"w{i}x" for i in range(400))] * 5
    count = ScriptedBackend().count_tokens  # one token a word: per-passage counts are exact
    calls = []

    def counted(messages):
        calls.append(1)
        return count(messages)

    def passage_tokens(cut):
        return [list(range(1, len(t.split()) + 1)) for t in cut]

    p = prompt("dear", max_words="auto")
    messages, words = fit_window(p, "q", texts, counted, 600, passage_tokens)
    assert count(messages) <= 600 < count(p.messages("q", texts, words + 1))
    assert len(calls) == 2  # the template alone, then the fitted window: no search by re-rendering


def test_top_k_reranks_the_head_and_keeps_the_tail():
    ranking = graded_ranking("q", [0, 1, 2, 3, 4, 5])
    out = ListwiseReranker(ScriptedBackend(), prompt("dear"), 3, 3, top_k=3).rerank([ranking])[0]
    assert [c.docid for c in out.candidates] == ["q-2", "q-1", "q-0", "q-3", "q-4", "q-5"]
    assert [c.score for c in out.candidates] == [6, 5, 4, 3, 2, 1]


def test_reranker_reports_the_words_it_fitted_per_window():
    ranking = Ranking(
        Query("q", "what"),
        [Candidate(f"d{i}", f"passage g={i} " + "filler " * 500) for i in range(4)],
    )
    out = ListwiseReranker(
        ScriptedBackend(prompt_limit=400), prompt("dear", max_words="auto"), 4, 2
    ).rerank([ranking])
    window = out[0].meta["windows"][0]
    assert window["prompt_tokens"] <= 400 and window["words_per_passage"] < 300
    assert [c.docid for c in out[0].candidates] == ["d3", "d2", "d1", "d0"]


def test_a_prompt_is_built_from_its_config_with_or_without_target():
    cfg = OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml")
    built = instantiate(cfg)
    assert ListwisePrompt.coerce(cfg) == built  # the Hydra _target_ key ignored
    assert ListwisePrompt.coerce({k: v for k, v in cfg.items() if k != "_target_"}) == built
    assert ListwisePrompt.coerce(built) is built
    with pytest.raises(TypeError, match="window"):
        ListwisePrompt.coerce({**OmegaConf.to_container(cfg), "window": 3})
