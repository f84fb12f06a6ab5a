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
from dear.listwise.sft_data import IGNORE, ListwiseSFTDataModule, collate, tokenize_example
from dear.listwise.synthetic import synthetic_examples
from dear.models.loading import load_tokenizer


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
    rows[1] = {k: v[:-5] for k, v in rows[1].items()}
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
