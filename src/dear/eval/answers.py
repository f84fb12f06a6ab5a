"""DPR's answer matching: ``has_answer`` is DPR's ``string`` match (NFD, DPR's SimpleTokenizer, lower-cased): the
answer's tokens occur contiguously in the passage's."""

from __future__ import annotations

import unicodedata

import regex

_TOKEN = regex.compile(
    r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
)


def tokens(text: str) -> list[str]:
    return [m.group().lower() for m in _TOKEN.finditer(unicodedata.normalize("NFD", text))]


def has_answer(answers: list[str], passage: str) -> bool:
    words = tokens(passage)
    for answer in answers:
        target = tokens(answer)
        n = len(target)
        if n and any(words[i : i + n] == target for i in range(len(words) - n + 1)):
            return True
    return False
