"""DPR's answer matching.

``has_answer`` follows DPR's ``string`` match: Unicode NFD normalisation, DPR's SimpleTokenizer
(runs of letters/digits/marks, or single other non-space characters), lower-cased; a passage
has the answer when the answer's token sequence occurs contiguously in the passage's tokens.
"""

from __future__ import annotations

import unicodedata

import regex

_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


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
