"""What every back end returns, and chat rendering shared by the local (tokenizer) back ends."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass

from dear.utils.memo import LRUMemo

STOP, LENGTH = "stop", "length"

# End-of-turn tokens of common chat models; the ones a tokenizer knows also stop generation.
END_OF_TURN = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


@dataclass(frozen=True)
class Generation:
    """One completion. ``finish``: ``stop`` (an end token) or ``length`` (cut at the token limit). ``scores``: a
    scored window's (``listwise.scoring=first_id``) log-probability of each id as the first one, window order; the
    ``text`` is then the ranking they give, and no token was generated."""

    text: str
    finish: str = STOP
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scores: tuple[float, ...] | None = None

    @property
    def truncated(self) -> bool:
        return self.finish == LENGTH


def plain_text(messages: list[dict[str, str]]) -> str:
    """A chat as raw text for models prompted without a chat template (contents joined by blank lines)."""
    return "\n\n".join(m["content"] for m in messages)


class TokenizerRenderer:
    """Chat → prompt token ids: ``chat=True`` the chat template with generation prompt (it writes BOS: no special
    tokens added); ``chat=False`` raw text with the usual special tokens, as the model card does."""

    def __init__(self, tokenizer, memo_size: int = 256):
        self.tokenizer = tokenizer
        # Cached by content: fitting a window counts the very prompt generation then needs.
        self.memo = LRUMemo(memo_size)

    def ids(self, messages: list[dict[str, str]], chat: bool = True) -> list[int]:
        key = json.dumps([chat, messages])
        return list(self.memo.get_many([key], lambda _: [self._render(messages, chat)])[0])

    def _render(self, messages: list[dict[str, str]], chat: bool) -> list[int]:
        if chat:
            if not self.tokenizer.chat_template:
                raise ValueError(
                    f"{self.tokenizer.name_or_path}: the tokenizer has no chat template; "
                    "use a prompt with chat_template: false"
                )
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(plain_text(messages))["input_ids"]

    def count(self, messages: list[dict[str, str]], chat: bool = True) -> int:
        return len(self.ids(messages, chat))

    @property
    def passage_tokens(self):
        """``counts[p][w - 1]``: tokens of text p's first w words read after a space; None without offsets."""
        return self._passage_tokens if self.tokenizer.is_fast else None

    def _passage_tokens(self, texts: list[str]) -> list[list[int]]:
        enc = self.tokenizer(
            [" " + t for t in texts], add_special_tokens=False, return_offsets_mapping=True
        )
        counts = []
        for text, offsets in zip(texts, enc["offset_mapping"]):
            starts = [start for start, _ in offsets]  # ascending: tokens in text order
            counts.append(
                [bisect.bisect_left(starts, 1 + w.end()) for w in re.finditer(r"\S+", text)]
            )
        return counts

    def stop_ids(self, extra: list[int] | int | None = None) -> list[int]:
        """EOS, the model's configured end ids (``extra``) and any end-of-turn token the vocabulary has."""
        ids = [extra] if isinstance(extra, int) else list(extra or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        vocab = self.tokenizer.get_vocab()
        ids += [vocab[t] for t in END_OF_TURN if t in vocab]
        return sorted(set(ids))


class LocalBackend:
    """Prompt budget (``context_size`` − ``max_new_tokens``) and token counts via ``renderer``, for local back ends."""

    renderer: TokenizerRenderer
    context_size: int | None
    max_new_tokens: int

    @property
    def prompt_limit(self) -> int | None:
        return None if self.context_size is None else self.context_size - self.max_new_tokens

    def count_tokens(self, messages, chat: bool = True) -> int:
        return self.renderer.count(messages, chat)

    @property
    def passage_tokens(self):
        return self.renderer.passage_tokens
