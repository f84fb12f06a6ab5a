"""A synthetic listwise task a tiny model can learn on a CPU (tests, smoke runs).

Each query asks about one topic word that exactly one of the ``n`` passages mentions, at a random position. The target
ranks it first, the rest in input order, with a one-line reasoning: the DeAR output format in miniature.
"""

from __future__ import annotations

import random

from dear.data.contract import Candidate, Query, Ranking
from dear.data.cot import CotExample
from dear.listwise.prompts import ListwisePrompt

# Words the tiny tokenizer (dear.models.tiny) keeps whole after a space: one token per topic.
TOPICS = ["llama", "fox", "dog", "cat", "bulb", "camelid", "mat", "lazy"]
FILLER = ["the", "quick", "brown", "warm", "south", "american", "sleeps"]


def synthetic_rankings(
    n_queries: int, n_passages: int = 3, seed: int = 0
) -> tuple[list[Ranking], dict]:
    """→ (rankings, qrels ``{qid: {docid: 1}}``): one relevant passage per query."""
    rng = random.Random(seed)
    rankings, qrels = [], {}
    for q in range(n_queries):
        topics = rng.sample(TOPICS, n_passages)
        relevant = rng.randrange(n_passages)
        cands = [
            Candidate(
                f"q{q}-d{i}", " ".join([t, *rng.sample(FILLER, 3)]), score=float(n_passages - i)
            )
            for i, t in enumerate(topics)
        ]
        rankings.append(Ranking(Query(f"q{q}", f"what is {topics[relevant]}"), cands))
        qrels[f"q{q}"] = {f"q{q}-d{relevant}": 1}
    return rankings, qrels


def synthetic_examples(
    prompt: ListwisePrompt,
    n_queries: int,
    n_passages: int = 3,
    seed: int = 0,
    reasoning: bool = True,
) -> list[CotExample]:
    """DeAR-COT examples of the task rendered with ``prompt`` (its word budget, ids and marker); ``reasoning``
    false: each answer is the ranking line alone (ranking targets for FIRST's loss, ``dear.listwise.window_fit``)."""
    rankings, qrels = synthetic_rankings(n_queries, n_passages, seed)
    words = prompt.auto_cap if prompt.max_words == "auto" else prompt.max_words
    examples = []
    for ranking in rankings:
        relevant = next(
            i for i, c in enumerate(ranking.candidates) if c.docid in qrels[ranking.qid]
        )
        order = [relevant] + [i for i in range(n_passages) if i != relevant]
        messages = prompt.messages(ranking.query.text, [c.text for c in ranking.candidates], words)
        topic = ranking.query.text.split()[-1]
        think = (
            " ".join(
                f"[{prompt.first_id + i}] {c.text.split()[0]} vs {topic}: {'yes' if i == relevant else 'no'}."
                for i, c in enumerate(ranking.candidates)
            )
            if reasoning
            else ""
        )
        examples.append(CotExample.from_messages(messages, prompt.ranking_line(order), think))
    return examples
