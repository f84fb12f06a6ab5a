"""A compact listwise prompt with the DeAR marker, for back-end and reranker tests."""

from __future__ import annotations

from dear.listwise.prompts import ListwisePrompt

MARKER = "### Final Reranking:"


def window_prompt() -> ListwisePrompt:
    return ListwisePrompt(
        name="t",
        prefix="{num} for {query}\n",
        passage="[{id}] {text}",
        suffix="\n{query}",
        marker=MARKER,
        max_words=8,
    )
