"""Listwise SFT data: DeAR-COT examples → chat-template tokens with the loss on the response only.

A sequence is exactly what inference sees plus the target: the prompt tokenised alone through the chat template with
the generation prompt (as the back ends do), then the template's assistant turn (response + end-of-turn) appended.
Prompt tokens get label −100.

With the prompt the examples were rendered with, an example whose answer is that prompt's ranking line (every id of
its window once, no reasoning before it) also carries FIRST's ranking targets (``rank_targets``): each id's answer
``{marker} [k]`` split into the tokens all share and each one's own, and the id's target rank, for the ranking loss
on the answer's first id (``module.rank_loss_weight``).
"""

from __future__ import annotations

import random
import re
from functools import partial

import lightning as L
from torch.utils.data import DataLoader

from dear.data.cot import THINK_TEMPLATE, CotExample, load_cot
from dear.errors import DataError
from dear.listwise.answer_scores import split_answers
from dear.listwise.backends.base import TokenizerRenderer
from dear.listwise.prompts import ListwisePrompt
from dear.models.batching import pad
from dear.models.loading import load_tokenizer
from dear.utils.progress import log

IGNORE = -100


def tokenize_example(
    tokenizer,
    example: CotExample,
    think_template: str = THINK_TEMPLATE,
    prompt: ListwisePrompt | None = None,
) -> dict:
    """→ ``{"input_ids": prompt + response, "labels": [-100] * len(prompt) + response, "rank": rank_targets(...)}``
    (``rank`` None without ``prompt``)."""
    messages = example.messages()
    prompt_text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    response = example.response(think_template)
    answer = {"role": "assistant", "content": response}
    full_text = tokenizer.apply_chat_template([*messages, answer], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise DataError(
            f"{tokenizer.name_or_path}: the chat template renders the prompt differently once the "
            "answer is appended; response-only labels need a template whose prompt is a prefix"
        )
    prompt_ids = TokenizerRenderer(tokenizer).ids(messages)
    response_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"]
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [IGNORE] * len(prompt_ids) + response_ids,
        "rank": None if prompt is None else rank_targets(tokenizer, prompt, response, response_ids),
    }


def rank_targets(
    tokenizer, prompt: ListwisePrompt, response: str, response_ids: list[int]
) -> dict | None:
    """FIRST's targets for a response that is ``prompt``'s ranking line of a whole window: ``{"head": the number of
    response tokens every id's answer ``{marker} [k]`` starts with, "tails": each id's own tokens (window order),
    "ranks": each id's 0-based position in the response's order}``, with the answers tokenized apart from the
    prompt as ``scoring=first_id`` scores them. None when the response is not such a line (reasoning before it, an
    id missing or repeated) or does not start with the shared tokens."""
    line = response.strip()
    if prompt.marker:
        if not line.startswith(prompt.marker):
            return None
        line = line[len(prompt.marker) :]
    ids = [int(x) - prompt.first_id for x in re.findall(r"\[(\d+)\]", line)]
    if len(ids) < 2 or sorted(ids) != list(range(len(ids))):
        return None
    answers = [prompt.ranking_line([i]) for i in range(len(ids))]
    head, tails = split_answers(
        [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    )
    if response_ids[: len(head)] != head:
        return None
    ranks = [0] * len(ids)
    for position, i in enumerate(ids):
        ranks[i] = position
    return {"head": len(head), "tails": tails, "ranks": ranks}


def held_out(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """→ (train, val): a seeded ``fraction`` of the rows' groups (``row["group"]``: a query's windows) held out whole,
    so no query has windows on both sides; with one row a group, a seeded shuffle of the rows."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    held = round(fraction * len(order))
    return [r for g in order[held:] for r in g], [r for g in order[:held] for r in g]


def collate(rows: list[dict], pad_id: int) -> dict:
    """Right-pad to the longest row: input_ids, attention_mask, labels, each (B, L) int64; ``rank``: each row's
    ``rank_targets`` (or None), as a list."""
    ids, mask = pad([r["input_ids"] for r in rows], pad_id)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": pad([r["labels"] for r in rows], IGNORE)[0],
        "rank": [r.get("rank") for r in rows],
    }


class ListwiseSFTDataModule(L.LightningDataModule):
    """``train`` / ``val``: a DeAR-COT source, examples, or a builder with ``examples(teacher)``; without ``val`` a
    seeded ``val_fraction`` is held out. Examples over ``max_length`` are dropped, never cut (that would lose passages
    or the ranking). ``prompt``: the one the examples were rendered with."""

    def __init__(
        self,
        tokenizer: str,
        train,
        val=None,
        val_fraction: float = 0.0,
        split: str = "train",
        limit: int | None = None,
        max_length: int = 4096,
        batch_size: int = 1,
        num_workers: int = 0,
        think_template: str = THINK_TEMPLATE,
        seed: int = 0,
        prompt=None,
        teacher=None,
    ):
        super().__init__()
        self.teacher = teacher
        self.prompt = None if prompt is None else ListwisePrompt.coerce(prompt)
        self.tokenizer = load_tokenizer(tokenizer)
        self.sources, self.split, self.limit = (train, val), split, limit
        self.val_fraction, self.max_length, self.seed = val_fraction, max_length, seed
        self.batch_size, self.num_workers, self.think_template = (
            batch_size,
            num_workers,
            think_template,
        )
        self.train_rows: list[dict] | None = None
        self.val_rows: list[dict] = []
        self.timings: dict[
            str, float
        ] = {}  # as Stage 1's data module (read by train.py): no timed steps here

    def records(self) -> dict[str, dict]:
        """Files for the run directory (as Stage 1's data module): none."""
        return {}

    def setup(self, stage: str | None = None) -> None:
        if self.train_rows is not None:
            return
        train_src, val_src = self.sources
        train = self._tokenized(train_src, "train")
        if val_src is not None:
            self.train_rows, self.val_rows = train, self._tokenized(val_src, "val")
        else:
            self.train_rows, self.val_rows = held_out(train, self.val_fraction, self.seed)
        ranked = sum(r["rank"] is not None for r in self.train_rows)
        log(
            f"listwise SFT: {len(self.train_rows)} train / {len(self.val_rows)} val examples, "
            f"{sum(len(r['input_ids']) for r in self.train_rows)} train tokens, {ranked} train "
            "examples with ranking targets"
        )

    def _tokenized(self, source, name: str) -> list[dict]:
        if isinstance(source, list):
            examples = source
        elif hasattr(source, "examples"):
            examples = source.examples(self.teacher)
        else:
            examples = load_cot(source, self.split, self.limit)
        rows = [
            {
                **tokenize_example(self.tokenizer, e, self.think_template, self.prompt),
                "group": e.group or f"#{i}",
            }
            for i, e in enumerate(examples)
        ]
        kept = [r for r in rows if len(r["input_ids"]) <= self.max_length]
        if len(kept) < len(rows):
            log(
                f"listwise SFT {name}: dropped {len(rows) - len(kept)} of {len(rows)} examples "
                f"longer than max_length={self.max_length} tokens"
            )
        if not kept:
            raise DataError(f"data.{name}: no example fits max_length={self.max_length} tokens")
        return kept

    def _loader(self, rows: list[dict], shuffle: bool) -> DataLoader:
        return DataLoader(
            rows,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=partial(collate, pad_id=self.tokenizer.pad_token_id),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_rows, shuffle=False) if self.val_rows else []
