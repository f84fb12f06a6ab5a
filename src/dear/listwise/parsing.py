"""Read a permutation out of a listwise model's free text, whatever the model wrote.

The ranking comes from the final-ranking line (``### Final Reranking: [2] > [1] > ...``) or,
when the prompt asks for none or the model left it out, from the last run of ``[i] > [j] ...``
in the answer. Ids mentioned in the reasoning are not ranks: reasoning inside ``<think>`` is
never read for ids, and an unclosed ``<think>`` or a generation cut at the token limit before
the final-ranking line falls back to the previous order. Duplicates are dropped, unknown ids
ignored and missing ids appended in their previous order, so the result is always a
permutation of ``range(n)``.

Status per output: ``clean`` (exactly what was asked), ``repaired`` (a ranking was found but
needed fixing or was not where the prompt asked for it) or ``fallback`` (no usable ranking:
the previous order is kept).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLEAN, REPAIRED, FALLBACK = "clean", "repaired", "fallback"
STATUSES = (CLEAN, REPAIRED, FALLBACK)

# ASCII digits only (``\d`` would accept other scripts' digits), at most 9 so int() stays cheap.
_BRACKETED = r"\[\s*[0-9]{1,9}\s*\]"
_BARE = r"[0-9]{1,9}(?![0-9])"
_BRACKET_RUN = re.compile(rf"{_BRACKETED}(?:\s*>\s*{_BRACKETED})+")
_BARE_RUN = re.compile(r"(?<![0-9\[])[0-9]{1,9}(?:\s*>\s*[0-9]{1,9})+(?![0-9\]])")
_ID_LIST = re.compile(rf"\s*(?:{_BRACKETED}|{_BARE})(?:\s*[>,]?\s*(?:{_BRACKETED}|{_BARE}))*")
_NUMBER = re.compile(r"[0-9]{1,9}")
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """``order``: window positions best first (a permutation of ``range(n)``)."""

    order: list[int]
    status: str
    issues: tuple[str, ...]
    reasoning: str


def marker_pattern(marker: str) -> re.Pattern:
    """``### Final Reranking:`` → its words with any spacing, case and Markdown emphasis, then an optional colon.

    Leading ``#``s are not part of the pattern (a long run of them would make the search
    quadratic); they are stripped from the reasoning instead.
    """
    words = re.findall(r"[A-Za-z0-9]+", marker)
    if not words:
        raise ValueError(f"marker {marker!r} has no words to match")
    return re.compile(r"[\s*_-]*".join(map(re.escape, words)) + r"[ \t*_]*:?[ \t*_]*", re.IGNORECASE)


def parse_ranking(text: str, n: int, first_id: int = 1, marker: str | None = None, truncated: bool = False) -> Parsed:
    """Parse ``text`` for a window of ``n`` passages numbered from ``first_id``.

    ``marker``: the final-ranking line the prompt asked for (``None``: the answer is the ranking).
    ``truncated``: the generation stopped at the token limit rather than at an end token.
    """
    issues: list[str] = []
    reasoning, answer, unclosed = _split_think(text)
    if unclosed:
        issues.append("unclosed <think>")
    if truncated:
        issues.append("cut at the token limit")
    ids, before = None, ""
    if marker is not None:
        ids, before = _after_marker(answer, marker_pattern(marker))
        if ids is None:
            issues.append("no final-ranking line")
    if ids is None and not unclosed and not (truncated and marker is not None):
        ids, before, repaired = _last_run(answer)
        if repaired:
            issues.append("ranking without brackets")
    reasoning = "\n\n".join(p for p in (reasoning.strip(), before.strip()) if p)
    if not ids:
        return Parsed(list(range(n)), FALLBACK, tuple(issues + ["no ranking found"]), reasoning)
    order, fixes = _normalise([i - first_id for i in ids], n)
    issues += fixes
    return Parsed(order, CLEAN if not issues else REPAIRED, tuple(issues), reasoning)


def _split_think(text: str) -> tuple[str, str, bool]:
    """→ (reasoning, answer, unclosed). Text after the last ``</think>`` is the answer. After an
    unclosed ``<think>`` everything is reasoning: only a final-ranking line inside it is read."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        return _THINK_OPEN.sub("", text[: last.start()]), text[last.end():], False
    opened = _THINK_OPEN.search(text)
    if opened:
        return "", text[opened.end():], True
    return "", text, False


def _after_marker(answer: str, pattern: re.Pattern) -> tuple[list[int] | None, str]:
    """Ids listed right after the last final-ranking marker that lists any → (ids or None, text before it).

    A marker phrase in prose ("the final reranking should ...") lists no ids and is skipped.
    """
    for found in reversed(list(pattern.finditer(answer))):
        listed = _ID_LIST.match(answer, found.end())
        if listed:
            return [int(x) for x in _NUMBER.findall(listed.group(0))], answer[: found.start()].rstrip(" \t#*_")
    return None, answer


def _last_run(answer: str) -> tuple[list[int] | None, str, bool]:
    """The last ``[i] > [j] ...`` run (or, failing that, ``i > j ...``) → (ids, text before, bare)."""
    for pattern, bare in ((_BRACKET_RUN, False), (_BARE_RUN, True)):
        last = None
        for last in pattern.finditer(answer):
            pass
        if last is not None:
            return [int(x) for x in _NUMBER.findall(last.group(0))], answer[: last.start()], bare
    return None, answer, False


def _normalise(positions: list[int], n: int) -> tuple[list[int], list[str]]:
    """Drop out-of-range and repeated positions, append the missing ones in their previous order."""
    issues = []
    valid = [p for p in positions if 0 <= p < n]
    if len(valid) < len(positions):
        issues.append(f"{len(positions) - len(valid)} out-of-range id(s)")
    order = list(dict.fromkeys(valid))
    if len(order) < len(valid):
        issues.append(f"{len(valid) - len(order)} duplicate id(s)")
    seen = set(order)
    missing = [p for p in range(n) if p not in seen]
    if missing:
        issues.append(f"{len(missing)} missing id(s)")
    return order + missing, issues
