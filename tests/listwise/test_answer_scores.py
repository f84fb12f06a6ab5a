"""Candidate answers' log-probabilities from one cache: the tree-masked single row and the expanded batch give
each tail's log-probability as one full causal pass does, with and without gradients."""

from __future__ import annotations

import pytest
import torch

from dear.listwise import answer_scores
from dear.listwise.answer_scores import split_answers, tail_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")

TAILS = [[7, 9], [7, 3, 9], [8, 9], [7, 4, 9], [11, 12, 13, 9], [5]]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request, tiny_llama_causal):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        tiny_llama_causal, attn_implementation=request.param
    ).eval()


def _prefix(model):
    torch.manual_seed(0)
    prompt = torch.randint(5, model.config.vocab_size - 1, (1, 40))
    out = model(input_ids=prompt, use_cache=True)
    return (
        prompt,
        out.logits[0, -1].float().log_softmax(-1),
        [(x[0], x[1]) for x in out.past_key_values],
    )


def _reference(model, prompt, tails) -> list[float]:
    out = []
    for tail in tails:
        logits = model(input_ids=torch.cat([prompt, torch.tensor([tail])], 1)).logits[0].float()
        logprobs = logits.log_softmax(-1)
        start = prompt.size(1) - 1
        out.append(sum(float(logprobs[start + j, t]) for j, t in enumerate(tail)))
    return out


@pytest.mark.parametrize("tree", [True, False])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_each_tail_scores_as_one_full_pass(model, tree, batch_size, monkeypatch):
    if not tree:
        monkeypatch.setattr(answer_scores, "TREE_ATTENTION", ())
    with torch.no_grad():
        prompt, following, layers = _prefix(model)
        got = tail_logprobs(model, layers, following, TAILS, pad_id=0, batch_size=batch_size)
        assert got.tolist() == pytest.approx(_reference(model, prompt, TAILS), abs=1e-4)


def test_both_passes_give_the_same_gradients(model, monkeypatch):
    grads = []
    for tree in (TREE_ATTENTION := answer_scores.TREE_ATTENTION, ()):
        monkeypatch.setattr(answer_scores, "TREE_ATTENTION", tree)
        model.zero_grad()
        _, following, layers = _prefix(model)
        tail_logprobs(model, layers, following, TAILS, pad_id=0).logsumexp(0).backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert TREE_ATTENTION and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_split_answers_keeps_a_token_of_each_answer():
    head, tails = split_answers([[1, 2, 3], [1, 2, 4, 5], [1, 2]])
    assert head == [1] and tails == [[2, 3], [2, 4, 5], [2]]
    with pytest.raises(ValueError, match="non-empty"):
        split_answers([[1], []])
