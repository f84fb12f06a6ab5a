"""Listwise prompts: one window of passages → chat messages (config group ``conf/prompt``).

Multi-turn (DeAR, RankGPT: one acknowledged user turn per passage) or single-turn (model card, RankZephyr). Passages
are cut to a word and/or character budget; ``max_words: auto`` picks the largest budget (≤ ``auto_cap``) that fits the
context beside ``max_new_tokens``, so windows are never silently overflowed; a fixed budget that overflows is an
error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dear.errors import DataError
from dear.utils.plain import to_plain

Messages = list[dict[str, str]]
# texts → per text, the token count of its first w words at index w - 1 (see TokenizerRenderer).
PassageTokens = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class ListwisePrompt:
    """Templates take ``{num}`` and ``{query}``; passage templates also ``{id}`` and ``{text}``.

    ``first_id``: 1 (DeAR, RankGPT) or 0 (model card). ``marker``: the final-ranking line (None: the answer is the
    ranking). ``chat_template: false``: raw user text (model card). ``drop``: a literal removed from passages before
    cutting (the DeAR reference drops rank_llm's ``"Title: Content: "``). ``max_chars``: the model card's
    ``doc[:300]``.
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
    max_words: int | str | None = 300
    auto_cap: int = 300
    max_chars: int | None = None
    drop: str | None = None
    chat_template: bool = True

    @classmethod
    def coerce(cls, prompt) -> ListwisePrompt:
        """A prompt, or its settings (a mapping or config; a Hydra ``_target_`` key is ignored)."""
        if isinstance(prompt, cls):
            return prompt
        return cls(**{k: v for k, v in to_plain(prompt).items() if k != "_target_"})

    def __post_init__(self):
        words_ok = self.max_words == "auto" or (
            isinstance(self.max_words, int) and self.max_words > 0
        )
        if not (words_ok or (self.max_words is None and self.max_chars)):
            raise DataError(
                f"prompt {self.name!r}: max_words must be a positive integer or 'auto' "
                f"(or null with max_chars set), got {self.max_words!r}"
            )
        if self.max_chars is not None and not (
            isinstance(self.max_chars, int) and self.max_chars > 0
        ):
            raise DataError(
                f"prompt {self.name!r}: max_chars must be a positive integer or null, "
                f"got {self.max_chars!r}"
            )
        if (self.prefix_reply is None) != (self.passage_reply is None):
            raise DataError(
                "prompt: set both prefix_reply and passage_reply (multi-turn) or neither (single-turn)"
            )

    @property
    def multi_turn(self) -> bool:
        return self.passage_reply is not None

    def passage_text(self, text: str, max_words: int | None) -> str:
        """One passage as the prompt shows it: ``drop`` removed, then the character and word cuts."""
        if self.drop:
            text = text.replace(self.drop, "").strip()
        if self.max_chars is not None:
            text = text[: self.max_chars]
        return text if max_words is None else cut_words(text, max_words)

    def messages(self, query: str, texts: list[str], max_words: int | None) -> Messages:
        """The chat for one window: ``texts`` are the passages in window order (ids from ``first_id``)."""
        fields = {"num": len(texts), "query": query}
        passages = [
            (self.first_id + i, self.passage_text(t, max_words)) for i, t in enumerate(texts)
        ]
        msgs: Messages = [{"role": "system", "content": self.system}] if self.system else []
        if self.multi_turn:
            msgs += [
                {"role": "user", "content": self.prefix.format(**fields)},
                {"role": "assistant", "content": self.prefix_reply.format(**fields)},
            ]
            for pid, text in passages:
                msgs += [
                    {"role": "user", "content": self.passage.format(id=pid, text=text, **fields)},
                    {"role": "assistant", "content": self.passage_reply.format(id=pid, **fields)},
                ]
            msgs.append({"role": "user", "content": self.suffix.format(**fields)})
        else:
            lines = (self.passage.format(id=pid, text=text, **fields) for pid, text in passages)
            body = self.passage_separator.join(lines)
            msgs.append(
                {
                    "role": "user",
                    "content": self.prefix.format(**fields) + body + self.suffix.format(**fields),
                }
            )
        return msgs

    def ranking_line(self, order: list[int]) -> str:
        """The answer this prompt asks for, for window positions ``order`` (0-based)."""
        ids = " > ".join(f"[{self.first_id + i}]" for i in order)
        return f"{self.marker} {ids}" if self.marker else ids


def cut_words(text: str, max_words: int) -> str:
    """The first ``max_words`` whitespace-separated words, re-joined by single spaces."""
    return " ".join(text.split()[:max_words])


SAMPLE_WORDS = 32  # words per passage whose tokens are counted; the rest extrapolated


def fit_window(
    prompt: ListwisePrompt,
    query: str,
    texts: list[str],
    count_tokens: Callable[[Messages], int],
    limit: int | None,
    passage_tokens: PassageTokens | None = None,
) -> tuple[Messages, int | None]:
    """Messages fitting ``limit`` prompt tokens → (messages, words per passage); an overflowing fixed budget raises.
    ``auto`` predicts the budget from a sample of each passage's tokens, checked by one render (rescaled if wrong)."""
    words = prompt.auto_cap if prompt.max_words == "auto" else prompt.max_words
    if limit is None or prompt.max_words != "auto":
        messages = prompt.messages(query, texts, words)
        used = 0 if limit is None else count_tokens(messages)
        if limit is not None and used > limit:
            raise DataError(
                f"prompt.max_words={words}: a window of {len(texts)} passages for query {query[:60]!r} "
                f"needs {used} tokens but only {limit} fit next to the generation budget; "
                f"set prompt.max_words=auto or a smaller budget, or a smaller window"
            )
        return messages, words
    overhead = count_tokens(prompt.messages(query, [""] * len(texts), 0))
    if overhead >= limit:
        raise DataError(
            f"prompt {prompt.name!r}: the template alone needs {overhead} tokens for a window of "
            f"{len(texts)} passages but only {limit} fit; use a smaller window or a larger context"
        )
    cut = [prompt.passage_text(t, words).split() for t in texts]
    bound = _largest_fitting([list(range(1, len(c) + 1)) for c in cut], words, limit - overhead)
    curves = _token_curves(cut, bound, passage_tokens)
    words = _largest_fitting(curves, bound, limit - overhead)
    messages = prompt.messages(query, texts, words)
    used = count_tokens(messages)
    while used > limit and words > 0:
        # measured / predicted tokens
        scale = (used - overhead) / max(_passage_total(curves, words), 1)
        words = _largest_fitting(curves, words - 1, (limit - overhead) / scale)
        messages = prompt.messages(query, texts, words)
        used = count_tokens(messages)
    return messages, words


def _token_curves(
    cut: list[list[str]], bound: int, passage_tokens: PassageTokens | None
) -> list[list[float]]:
    """Per passage, tokens of its first w words: counted up to ``SAMPLE_WORDS``, then extrapolated linearly."""
    sample = min(SAMPLE_WORDS, bound)
    counted = (
        passage_tokens([" ".join(c[:sample]) for c in cut])
        if passage_tokens
        else [list(range(1, min(len(c), sample) + 1)) for c in cut]
    )
    curves = []
    for words, row in zip(cut, counted):
        per_word = row[-1] / len(row) if row else 1.0
        curves.append(row + [per_word * w for w in range(len(row) + 1, min(len(words), bound) + 1)])
    return curves


def _passage_total(prefix: list[list[int]], words: int) -> int:
    """Σ over passages of the tokens of their first ``words`` words."""
    return sum(p[min(words, len(p)) - 1] for p in prefix if p and words > 0)


def _largest_fitting(prefix: list[list[int]], high: int, budget: float) -> int:
    """The largest w in [0, high] with Σ tokens(first w words) ≤ budget (binary search)."""
    low = 0
    while low < high:
        mid = (low + high + 1) // 2
        if _passage_total(prefix, mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
