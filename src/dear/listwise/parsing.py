"""Read a permutation out of a listwise model's free text, whatever the model wrote.

The ranking comes from the final-ranking line (``### Final Reranking: [2] > [1] > ...`` or a numbered list); without a
marker in the prompt, from the longest (earliest) ``[i] > [j] ...`` run; when the asked-for line is missing, from the
last run. ``<think>`` content is never read for ids; an unclosed ``<think>``, truncation before the final-ranking
line, or a final line without a ranking falls back to the previous order. ``<`` runs are reversed. Duplicates are
dropped, unknown ids ignored, missing ones appended in previous order: always a permutation of ``range(n)``. Status:
``clean``, ``repaired`` or ``fallback``.

Every pattern is linear in the text (possessive ``*+`` wherever spaces could split between two quantifiers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLEAN, REPAIRED, FALLBACK = "clean", "repaired", "fallback"
STATUSES = (CLEAN, REPAIRED, FALLBACK)

# ASCII digits only (``\d`` would accept other scripts' digits), at most 9 so int() stays cheap.
_ID = r"\[[ \t]*+[0-9]{1,9}+[ \t]*+\]"
_SEP = r"(?:\s*+[><,]\s*+|[ \t]++)"  # an explicit separator (across lines), or spaces alone
_ENUM = r"[0-9]{1,9}+[.)][ \t]*+"  # "1. " / "2) " of a numbered list
# What may follow the final-ranking marker, tried in this order.
_NUMBERED_LIST = re.compile(rf"\s*+{_ENUM}{_ID}(?:[ \t]*+\n\s*+{_ENUM}{_ID})++")
_ID_LIST = re.compile(rf"\s*+{_ID}(?:{_SEP}{_ID})*+")
_BARE_LIST = re.compile(r"\s*+[0-9]{1,9}+(?:[ \t]*+[><,][ \t]*+[0-9]{1,9}+)++(?![0-9])")
# Runs anywhere in the answer: two or more ids joined by '>' or '<'.
_ID_RUN = re.compile(rf"{_ID}(?:\s*+[><]\s*+{_ID})++")
_BARE_RUN = re.compile(r"(?<![0-9\[])[0-9]{1,9}+(?:\s*+[><]\s*+[0-9]{1,9}+)++(?![0-9\]])")
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
    """``### Final Reranking:`` with any spacing, case and emphasis; group ``lead`` (line start) or ``colon`` makes it
    the final-ranking line, else it is prose."""
    words = re.findall(r"[A-Za-z0-9]+", marker)
    if not words:
        raise ValueError(f"marker {marker!r} has no words to match")
    body = r"[\s*_-]*+".join(map(re.escape, words))
    return re.compile(
        rf"(?P<lead>^[ \t#*_]*+)?+{body}[ \t*_]*+(?P<colon>:)?+[ \t*_]*+",
        re.IGNORECASE | re.MULTILINE,
    )


def parse_ranking(
    text: str, n: int, first_id: int = 1, marker: str | None = None, truncated: bool = False
) -> Parsed:
    """Parse ``text`` for ``n`` passages numbered from ``first_id``; ``marker``: the line asked for (None: the whole
    answer); ``truncated``: generation hit the token limit."""
    issues: list[str] = []
    reasoning, answer, unclosed = _split_think(text)
    if unclosed:
        issues.append("unclosed <think>")
    if truncated:
        issues.append("cut at the token limit")
    span, before, final_line = None, "", False
    if marker is not None:
        final_line, span, before = _after_marker(answer, marker_pattern(marker))
        if not final_line:
            issues.append("no final-ranking line")
        elif span is None:
            issues.append("final-ranking line lists no ranking")
    if span is None and not final_line and not unclosed and not (truncated and marker is not None):
        span, before = _find_run(answer, last=marker is not None)
        if span is not None and "[" not in span:
            issues.append("ranking without brackets")
    reasoning = "\n\n".join(p for p in (reasoning.strip(), before.strip()) if p)
    ids = _ids(span, issues) if span is not None else None
    if not ids:
        return Parsed(list(range(n)), FALLBACK, tuple(issues + ["no ranking found"]), reasoning)
    order, fixes = _normalise(ids, first_id, n)
    issues += fixes
    return Parsed(order, CLEAN if not issues else REPAIRED, tuple(issues), reasoning)


def _split_think(text: str) -> tuple[str, str, bool]:
    """→ (reasoning, answer, unclosed); after an unclosed ``<think>`` only a final-ranking line is read."""
    last = None
    for match in _THINK_CLOSE.finditer(text):
        last = match
    if last is not None:
        return _THINK_OPEN.sub("", text[: last.start()]), text[last.end() :], False
    opened = _THINK_OPEN.search(text)
    if opened:
        return "", text[opened.end() :], True
    return "", text, False


def _after_marker(answer: str, pattern: re.Pattern) -> tuple[bool, str | None, str]:
    """The last final-ranking line → (found, the ids it lists or None, text before it)."""
    line = None
    for found in pattern.finditer(answer):
        if found.group("lead") is not None or found.group("colon"):
            line = found
    if line is None:
        return False, None, answer
    before = answer[: line.start()].rstrip(" \t#*_")
    for listed in (_NUMBERED_LIST, _ID_LIST, _BARE_LIST):
        match = listed.match(answer, line.end())
        if match:
            body = match.group(0)
            if listed is _NUMBERED_LIST:  # the enumerators are not ids
                body = " ".join(re.findall(_ID, body))
            return True, body, before
    return True, None, before


def _find_run(answer: str, last: bool) -> tuple[str | None, str]:
    """An ``[i] > [j]`` (else ``i > j``) run → (its text, text before): ``last`` the last, else the longest."""
    for pattern in (_ID_RUN, _BARE_RUN):
        best, best_len = None, 0
        for run in pattern.finditer(answer):
            length = run.group(0).count(">") + run.group(0).count("<")
            if last or length > best_len:
                best, best_len = run, length
        if best is not None:
            return best.group(0), answer[: best.start()]
    return None, answer


def _ids(span: str, issues: list[str]) -> list[str] | None:
    """The ids of a matched list, best first: ``<`` lists are reversed, mixed ``>``/``<`` is no ranking (None)."""
    ids = _NUMBER.findall(span)
    if "<" not in span:
        return ids
    if ">" in span:
        issues.append("ranking mixes '>' and '<'")
        return None
    issues.append("ranking written worst first with '<'")
    return ids[::-1]


def _normalise(ids: list[str], first_id: int, n: int) -> tuple[list[int], list[str]]:
    """Ids → window positions: repeats (as strings first: outputs can list millions) and unknowns dropped, missing ids
    appended in their previous order."""
    issues = []
    distinct = [int(x) - first_id for x in dict.fromkeys(ids)]
    valid = [p for p in distinct if 0 <= p < n]
    if len(valid) < len(distinct):
        issues.append(f"{len(distinct) - len(valid)} out-of-range id(s)")
    order = list(dict.fromkeys(valid))
    repeats = len(ids) - len(distinct) + len(valid) - len(order)
    if repeats:
        issues.append(f"{repeats} duplicate id(s)")
    seen = set(order)
    missing = [p for p in range(n) if p not in seen]
    if missing:
        issues.append(f"{len(missing)} missing id(s)")
    return order + missing, issues
