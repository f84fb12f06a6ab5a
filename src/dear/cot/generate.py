"""Synthetic chain-of-thought ranking data (DeAR-L Stage 2 training set) from a chat endpoint.

Each query's Stage-1 top-``depth`` is sent with the three-step prompt; an answer is kept only when its final-ranking
line is a complete permutation (``clean``), else retried up to ``max_attempts`` times, then rejected. Each finished
query is appended at once, so a killed run resumes and never writes a query twice. Files: ``<output>`` (rows +
``meta``), ``<stem>.rejected.jsonl``, ``<stem>.summary.json``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dear.data.candidates import is_json, rankllm_json, trec_run
from dear.data.contract import Ranking
from dear.data.cot import CotExample
from dear.data.texts import DocStore, load_queries
from dear.errors import DataError, positive_depth
from dear.listwise.parsing import CLEAN, parse_ranking
from dear.listwise.prompts import ListwisePrompt, fit_window
from dear.utils.io import JsonlAppender, atomic_write_json
from dear.utils.progress import log, progress_bar


def load_candidates(
    path: str,
    docs: str | None = None,
    queries: str | None = None,
    depth: int = 20,
    limit: int | None = None,
) -> list[Ranking]:
    """The top ``depth`` of the first ``limit`` queries: a rank_llm JSON, or a TREC run + ``docs`` and ``queries``."""
    positive_depth(depth, "candidates.depth")
    if not Path(path).is_file():
        raise DataError(f"candidates.path: file not found: {path}")
    if is_json(path):
        run = rankllm_json(path, depth)
    else:
        if not docs or not queries:
            raise DataError(
                f"candidates.path={path} is a TREC run: set candidates.docs and candidates.queries "
                "(TSV files or ir_datasets ids) for the texts"
            )
        run = trec_run(path, load_queries(queries), DocStore(docs), depth)
    rankings = list(run.values())
    return rankings[:limit] if limit is not None else rankings


def companion(output: Path, suffix: str) -> Path:
    """``data/cot.jsonl`` → ``data/cot.rejected.jsonl`` etc."""
    return output.with_name(output.name.removesuffix(".jsonl") + suffix)


class CotGenerator:
    """``endpoint``: an ``OpenAIChatBackend``; ``prompt``: a ``ListwisePrompt``; retries at ``retry_temperature``."""

    def __init__(
        self,
        endpoint,
        prompt: ListwisePrompt | dict,
        max_attempts: int = 3,
        retry_temperature: float | None = None,
    ):
        if max_attempts < 1:
            raise DataError(f"generator.max_attempts must be at least 1, got {max_attempts}")
        self.endpoint = endpoint
        self.prompt = ListwisePrompt.coerce(prompt)
        self.max_attempts, self.retry_temperature = max_attempts, retry_temperature

    def run(self, rankings: list[Ranking], output: str | Path) -> dict:
        """Generate for every query not yet in ``output`` (kept or rejected); → the summary."""
        output = Path(output)
        kept, rejected = JsonlAppender(output), JsonlAppender(companion(output, ".rejected.jsonl"))
        try:
            done = {row["meta"]["qid"] for row in kept.rows} | {row["qid"] for row in rejected.rows}
            todo = [r for r in rankings if r.qid not in done and len(r.candidates) >= 2]
            log(f"CoT generation: {len(done)} queries already done, {len(todo)} to go -> {output}")
            asyncio.run(self._generate_all(todo, kept, rejected))
        finally:
            kept.close()
            rejected.close()
        summary = _summary(kept.rows, rejected.rows, self.endpoint.name)
        atomic_write_json(companion(output, ".summary.json"), summary)
        return summary

    async def _generate_all(
        self, todo: list[Ranking], kept: JsonlAppender, rejected: JsonlAppender
    ) -> None:
        async with self.endpoint.session() as session:
            with progress_bar("CoT generation", len(todo)) as advance:
                for next_done in asyncio.as_completed([self._one(session, r) for r in todo]):
                    ok, row = await next_done
                    (kept if ok else rejected).append(row)
                    advance()

    async def _one(self, session, ranking: Ranking) -> tuple[bool, dict]:
        texts = [c.full_text for c in ranking.candidates]
        messages, words = fit_window(
            self.prompt,
            ranking.query.text,
            texts,
            self.endpoint.count_tokens,
            self.endpoint.prompt_limit,
        )
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        issues = []
        for attempt in range(1, self.max_attempts + 1):
            gen = await session.chat(
                messages, temperature=None if attempt == 1 else self.retry_temperature
            )
            usage["prompt_tokens"] += gen.prompt_tokens
            usage["completion_tokens"] += gen.completion_tokens
            parsed = parse_ranking(
                gen.text, len(texts), self.prompt.first_id, self.prompt.marker, gen.truncated
            )
            if parsed.status == CLEAN:
                example = CotExample.from_messages(
                    messages, self.prompt.ranking_line(parsed.order), parsed.reasoning
                )
                meta = {
                    "qid": ranking.qid,
                    "docids": [c.docid for c in ranking.candidates],
                    "attempts": attempt,
                    "model": self.endpoint.name,
                    "prompt": self.prompt.name,
                    "words_per_passage": words,
                    "usage": usage,
                }
                return True, example.record(meta=meta)
            issues.append(list(parsed.issues))
        return False, {
            "qid": ranking.qid,
            "attempts": self.max_attempts,
            "issues": issues,
            "last_output": gen.text,
            "usage": usage,
        }


def _summary(kept: list[dict], rejected: list[dict], model: str) -> dict:
    usages = [r["meta"]["usage"] for r in kept] + [r["usage"] for r in rejected]
    return {
        "model": model,
        "kept": len(kept),
        "rejected": len(rejected),
        "requests": sum(r["meta"]["attempts"] for r in kept) + sum(r["attempts"] for r in rejected),
        "prompt_tokens": sum(u["prompt_tokens"] for u in usages),
        "completion_tokens": sum(u["completion_tokens"] for u in usages),
    }
