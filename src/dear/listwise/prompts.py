"""Listwise prompts: one window of passages → chat messages (config group ``conf/prompt``).

Two shapes cover every prompt the project uses:

* multi-turn (DeAR, RankGPT): a user turn introducing the ``num`` passages, one user turn per
  passage ``[i] text`` each acknowledged by the assistant, then a final user turn with the
  query and instructions;
* single-turn (the released model card, RankZephyr): one user message holding the
  introduction, the passage list and the instructions.

Passages are cut to a word budget. ``max_words: auto`` picks the largest budget, at most
``auto_cap``, whose rendered window fits the model's context next to ``max_new_tokens`` — so a
long window is cut, never silently overflowed; a fixed budget that overflows is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dear.errors import DataError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ListwisePrompt:
    """Templates take ``{num}`` and ``{query}``; passage templates also ``{id}`` and ``{text}``.

    ``first_id`` numbers passages from 1 (DeAR, RankGPT) or 0 (the model card). ``marker`` is the
    final-ranking line the prompt asks for (``None``: the whole answer is the ranking).
    ``chat_template: false`` renders the user text alone, without the tokenizer's chat template
    (the model card feeds the raw prompt to the tokenizer).
    """

    name: str
    prefix: str
    passage: str
    suffix: str
    system: str | None = None
    prefix_reply: str | None = None
    passage_reply: str | None = None
    passage_separator: str = "\n"
    first_id: int = 1
    marker: str | None = None
    max_words: int | str = 300
    auto_cap: int = 300
    chat_template: bool = True

    def __post_init__(self):
        if self.max_words != "auto" and not (isinstance(self.max_words, int) and self.max_words > 0):
            raise DataError(f"prompt.max_words must be a positive integer or 'auto', got {self.max_words!r}")
        if (self.prefix_reply is None) != (self.passage_reply is None):
            raise DataError("prompt: set both prefix_reply and passage_reply (multi-turn) or neither (single-turn)")

    @property
    def multi_turn(self) -> bool:
        return self.passage_reply is not None

    def messages(self, query: str, texts: list[str], max_words: int) -> Messages:
        """The chat for one window: ``texts`` are the passages in window order (ids from ``first_id``)."""
        fields = {"num": len(texts), "query": query}
        passages = [(self.first_id + i, cut_words(t, max_words)) for i, t in enumerate(texts)]
        msgs: Messages = [{"role": "system", "content": self.system}] if self.system else []
        if self.multi_turn:
            msgs += [{"role": "user", "content": self.prefix.format(**fields)},
                     {"role": "assistant", "content": self.prefix_reply.format(**fields)}]
            for pid, text in passages:
                msgs += [{"role": "user", "content": self.passage.format(id=pid, text=text, **fields)},
                         {"role": "assistant", "content": self.passage_reply.format(id=pid, **fields)}]
            msgs.append({"role": "user", "content": self.suffix.format(**fields)})
        else:
            lines = (self.passage.format(id=pid, text=text, **fields) for pid, text in passages)
            body = self.passage_separator.join(lines)
            msgs.append({"role": "user", "content": self.prefix.format(**fields) + body + self.suffix.format(**fields)})
        return msgs

    def ranking_line(self, order: list[int]) -> str:
        """The answer this prompt asks for, for window positions ``order`` (0-based)."""
        ids = " > ".join(f"[{self.first_id + i}]" for i in order)
        return f"{self.marker} {ids}" if self.marker else ids


def cut_words(text: str, max_words: int) -> str:
    """The first ``max_words`` whitespace-separated words, re-joined by single spaces."""
    return " ".join(text.split()[:max_words])


def fit_window(prompt: ListwisePrompt, query: str, texts: list[str], count_tokens: Callable[[Messages], int],
               limit: int | None) -> tuple[Messages, int]:
    """Messages for one window that fit in ``limit`` prompt tokens → (messages, words per passage).

    ``limit`` is the context size minus the generation budget (``None``: no limit known).
    With ``max_words: auto`` the budget shrinks in proportion to the overflow until it fits
    (a few tokenizer calls); a fixed budget that overflows raises, naming the setting.
    """
    words = prompt.auto_cap if prompt.max_words == "auto" else prompt.max_words
    messages = prompt.messages(query, texts, words)
    if limit is None:
        return messages, words
    used = count_tokens(messages)
    if prompt.max_words != "auto":
        if used > limit:
            raise DataError(f"prompt.max_words={words}: a window of {len(texts)} passages for query {query[:60]!r} "
                            f"needs {used} tokens but only {limit} fit next to the generation budget; "
                            f"set prompt.max_words=auto or a smaller budget, or a smaller window")
        return messages, words
    overhead = count_tokens(prompt.messages(query, [""] * len(texts), 0))
    if overhead >= limit:
        raise DataError(f"prompt {prompt.name!r}: the template alone needs {overhead} tokens for a window of "
                        f"{len(texts)} passages but only {limit} fit; use a smaller window or a larger context")
    while used > limit and words > 0:
        # Passage tokens scale roughly with words: shrink by the overflow ratio, at least one word.
        ratio = (limit - overhead) / max(used - overhead, 1)
        words = min(words - 1, int(words * ratio))
        words = max(words, 0)
        messages = prompt.messages(query, texts, words)
        used = count_tokens(messages)
    return messages, words
