"""Permutation-constrained decoding: the grammar, token texts of real tokenizers, the logits processor under random
logits, and the transformers back end and reranker with ``constrained=True``."""

from __future__ import annotations

import random

import pytest
import torch

from dear.data.contract import Candidate, Query, Ranking
from dear.errors import ConfigError
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.constrained import (
    PermutationGrammar,
    PermutationLogitsProcessor,
    token_texts,
)
from dear.listwise.parsing import parse_ranking
from dear.listwise.reranker import ListwiseReranker
from tests.helpers import shared
from tests.helpers.listwise import MARKER, window_prompt


def accepts(grammar: PermutationGrammar, text: str, pieces: int = 1, seed: int = 0):
    """The state after ``text`` fed in ``pieces`` random chunks (None: rejected)."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(pieces - 1, len(text) - 1)))
    state = grammar.start()
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        state = grammar.advance(state, text[a:b])
        if state is None:
            return None
    return state


@pytest.mark.parametrize("seed", range(5))
def test_every_permutation_is_accepted_however_it_is_cut(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 25)
    ids = [f"[{i + 1}]" for i in rng.sample(range(n), n)]
    grammar = PermutationGrammar(n, 1, MARKER)
    state = accepts(grammar, f"{MARKER} " + " > ".join(ids), pieces=rng.randint(1, 30), seed=seed)
    assert state is not None and grammar.complete(state)
    # every proper prefix is allowed and not complete
    assert not grammar.complete(accepts(grammar, f"{MARKER} " + " > ".join(ids)[:-1]))


@pytest.mark.parametrize(
    "text",
    [
        "### Final Reranking: [1] > [1]",  # an id twice
        "### Final Reranking: [1] > [4]",  # out of range
        "### Final Reranking: [0]",  # ids start at 1
        "### Final Reranking: [01]",
        "### Final Reranking: [1] >[2]",  # the separator is " > "
        "### Final Reranking: [1], [2]",
        "### Final Reranking: [1] > [2] > [3] > ",  # nothing after the last id
        "### Final Reranking: [1] > [2] > [3]\n",
        "Final Reranking: [1]",  # the head first
        "[1] > [2] > [3]",
        "   ### Final Reranking: [1]",  # at most two leading spaces
    ],
)
def test_what_leaves_the_grammar_is_rejected(text):
    assert accepts(PermutationGrammar(3, 1, MARKER), text) is None


def test_leading_space_no_marker_and_zero_based_ids():
    assert accepts(PermutationGrammar(2, 1, MARKER), " \n### Final Reranking: [2] > [1]")
    free = PermutationGrammar(11, 0, None)
    text = " > ".join(f"[{i}]" for i in [10, *range(10)])
    assert free.complete(accepts(free, text, pieces=7))
    assert accepts(free, "[11]") is None and accepts(free, "[1") is not None
    with pytest.raises(ValueError, match="at least one passage"):
        PermutationGrammar(0)


@pytest.fixture(
    scope="module", params=["llama2/hf_llama2", "llama3/hf_llama3.1_8b_instruct", "qwen2.5"]
)
def real_tokenizer(request):
    """(a real tokenizer from ../shared/data/tokenizers, its ``token_texts``): loaded once per tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shared("tokenizers", request.param))
    return tokenizer, token_texts(tokenizer)


def test_token_texts_read_as_the_tokens_do_inside_a_text(real_tokenizer):
    real_tokenizer, texts = real_tokenizer
    assert len(texts) == len(real_tokenizer)
    line = f"{MARKER} [1] > [12] > [3]"
    ids = real_tokenizer(line, add_special_tokens=False)["input_ids"]
    # SentencePiece writes a space before the first word; byte-level BPE does not
    assert "".join(texts[i] for i in ids).lstrip(" ") == line
    assert all(texts[i] == "" for i in real_tokenizer.all_special_ids)


@pytest.mark.parametrize("seed", range(3))
def test_random_logits_under_the_grammar_give_a_clean_permutation(real_tokenizer, seed):
    """Greedy decoding on random logits (two rows, windows of 20 and 7, one more row left free): every constrained
    row writes the head and each id once, then its end token."""
    real_tokenizer, texts = real_tokenizer
    stop = [real_tokenizer.eos_token_id]
    grammars = [PermutationGrammar(20, 1, MARKER), PermutationGrammar(7, 1, MARKER), None]
    processor = PermutationLogitsProcessor(grammars, texts, stop, start=3)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros((3, 3), dtype=torch.long)
    for _ in range(200):
        scores = torch.randn((3, len(texts)), generator=generator)
        free = scores[2].clone()
        scores = processor(ids, scores)
        assert torch.equal(scores[2], free)
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
    for row, n in ((0, 20), (1, 7)):
        new = ids[row, 3:].tolist()
        end = new.index(stop[0])
        text = "".join(texts[t] for t in new[:end])
        parsed = parse_ranking(text, n, 1, MARKER)
        assert parsed.status == "clean", text
        assert sorted(parsed.order) == list(range(n))


def test_a_finished_row_is_left_alone():
    texts = ["", "[", "1", "]", " > ", "2", "x", "### Final Reranking: "]
    grammar = PermutationGrammar(1, 1, None)
    processor = PermutationLogitsProcessor([grammar], texts, stop=[0], start=1)
    scores = torch.zeros((1, len(texts)))
    allowed = processor(torch.tensor([[5]]), scores.clone())[0].isfinite().nonzero().ravel()
    assert allowed.tolist() == [1]  # only "["
    steps = torch.tensor([[5, 1, 2, 3]])  # "[1]": complete, only the end may follow
    assert processor(steps, scores.clone())[0].isfinite().nonzero().ravel().tolist() == [0]
    ended = torch.tensor([[5, 1, 2, 3, 0, 6]])  # ended: whatever follows is padding
    assert processor(ended, scores.clone()).isfinite().all()


def rankings(k: int = 2, n: int = 5) -> list[Ranking]:
    return [
        Ranking(
            Query(f"q{q}", "llama"),
            [Candidate(f"d{i}", f"the llama {q} is a camelid {i}") for i in range(n)],
        )
        for q in range(k)
    ]


def test_the_tiny_model_constrained_parses_clean(tiny_llama_causal, tmp_path):
    """Random weights fall back on every window (test_backends); constrained, every answer is a clean ranking."""
    backend = TransformersBackend(tiny_llama_causal, max_new_tokens=64, dtype="float32")
    free = ListwiseReranker(backend, window_prompt(), 4, 2, cache_dir=str(tmp_path))
    bound = ListwiseReranker(
        backend, window_prompt(), 4, 2, cache_dir=str(tmp_path), constrained=True
    )
    assert free.rerank(rankings())[0].meta["parse"] == "fallback"
    out = bound.rerank(rankings())
    assert (
        bound.stage_metrics()["parse_clean"] == 1.0 and bound.reused == 0
    )  # no free answer reused
    for ranking in out:
        assert sorted(c.docid for c in ranking.candidates) == [f"d{i}" for i in range(5)]
        assert all(w["output"].startswith(MARKER) for w in ranking.meta["windows"])
    again = ListwiseReranker(
        backend, window_prompt(), 4, 2, cache_dir=str(tmp_path), constrained=True
    )
    assert again.rerank(rankings()) == out and again.reused == 4


def test_beam_search_under_the_grammar_follows_each_beam(tiny_llama_causal):
    """Beams are reordered between steps (each row's state is read from its own tokens): every returned answer
    still parses clean."""
    chats = [
        window_prompt().messages("llama", [f"camelid {i}" for i in range(n)], 8) for n in (4, 6)
    ]
    grammars = [PermutationGrammar(n, 1, MARKER) for n in (4, 6)]
    greedy = TransformersBackend(tiny_llama_causal, max_new_tokens=64, dtype="float32")
    beams = TransformersBackend(tiny_llama_causal, max_new_tokens=64, dtype="float32", num_beams=3)
    assert beams.identity["num_beams"] == 3 and "num_beams" not in greedy.identity
    for gen, n in zip(beams.generate(chats, constraints=grammars), (4, 6)):
        parsed = parse_ranking(gen.text, n, 1, MARKER)
        assert parsed.status == "clean" and sorted(parsed.order) == list(range(n)), gen.text
    with pytest.raises(ValueError, match="num_beams must be at least 1"):
        TransformersBackend(tiny_llama_causal, do_sample=True, num_beams=2)


def test_a_back_end_that_cannot_constrain_is_refused():
    class Remote:
        identity = {"backend": "openai"}

    with pytest.raises(ConfigError, match="Remote back end cannot constrain"):
        ListwiseReranker(Remote(), window_prompt(), constrained=True)
    with pytest.raises(ConfigError, match="listwise.constrained: expected true or false"):
        ListwiseReranker(Remote(), window_prompt(), constrained="yes")
