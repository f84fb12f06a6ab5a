"""Resumable listwise runs: every window's generation cached by content; a killed run re-run on
the same directory generates only the windows it had not finished and writes the same ranking."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dear.data.contract import Candidate, Query, Ranking
from dear.errors import DataError
from dear.listwise.backends import Generation
from dear.listwise.cache import GenerationCache
from dear.listwise.prompts import ListwisePrompt
from dear.listwise.reranker import ListwiseReranker
from tests.helpers import ROOT

PROMPT = ListwisePrompt(
    name="t",
    prefix="{num} for {query}",
    passage="[{id}] {text}",
    suffix="rank",
    prefix_reply="ok",
    passage_reply="got [{id}]",
    marker="Final:",
)


class Killed(Exception):
    pass


class GradingBackend:
    """Ranks each window by the hidden grade `g=<n>` of its passages, reporting every window as it
    is done; raises after `die_after` windows, like a process killed mid-step."""

    def __init__(self, seed: int = 0, die_after: int | None = None):
        self.identity = {"backend": "grading", "seed": seed}
        self.prompt_limit, self.die_after, self.generated = None, die_after, 0

    def count_tokens(self, messages, chat=True):
        return 0

    def generate(self, conversations, chat=True, desc="", on_done=None):
        out = []
        for i, messages in enumerate(conversations):
            if self.generated == self.die_after:
                raise Killed
            turns = [m["content"] for m in messages if re.match(r"\[\d+\] ", m["content"])]
            grades = {
                int(re.match(r"\[(\d+)\]", t).group(1)): int(re.search(r"g=(\d+)", t).group(1))
                for t in turns
            }
            gen = Generation(
                "Final: " + " > ".join(f"[{j}]" for j in sorted(grades, key=lambda j: -grades[j]))
            )
            self.generated += 1
            out.append(gen)
            if on_done:
                on_done(i, gen)
        return out


def rankings() -> list[Ranking]:
    """4 queries x 25 candidates, grades shuffled so every window reorders (3 windows a query)."""
    return [
        Ranking(
            Query(f"q{q}", "what"),
            [Candidate(f"q{q}-{i}", f"g={(i * 7 + q) % 25}") for i in range(25)],
        )
        for q in range(4)
    ]


def orders(run: list[Ranking]) -> list[list[str]]:
    return [[c.docid for c in r.candidates] for r in run]


def test_a_rerun_after_a_kill_generates_only_the_missing_windows_and_ranks_the_same(tmp_path):
    whole = ListwiseReranker(GradingBackend(), PROMPT, 10, 5).rerank(rankings())
    with pytest.raises(Killed):
        ListwiseReranker(
            GradingBackend(die_after=5), PROMPT, 10, 5, cache_dir=str(tmp_path)
        ).rerank(rankings())
    backend = GradingBackend()
    resumed = ListwiseReranker(backend, PROMPT, 10, 5, cache_dir=str(tmp_path))
    again = resumed.rerank(rankings())
    total = sum(len(r.meta["windows"]) for r in again)
    assert total == 16 and resumed.reused == 5 and backend.generated == 11
    assert orders(again) == orders(whole) != orders(rankings())
    assert [r.meta for r in again] == [r.meta for r in whole]
    backend = GradingBackend()
    ListwiseReranker(backend, PROMPT, 10, 5, cache_dir=str(tmp_path)).rerank(rankings())
    assert backend.generated == 0  # a finished run is read back whole


def test_other_decoding_settings_do_not_reuse_the_cache(tmp_path):
    ListwiseReranker(GradingBackend(seed=0), PROMPT, 10, 5, cache_dir=str(tmp_path)).rerank(
        rankings()
    )
    backend = GradingBackend(seed=1)
    reranker = ListwiseReranker(backend, PROMPT, 10, 5, cache_dir=str(tmp_path))
    reranker.rerank(rankings())
    assert reranker.reused == 0 and backend.generated == 16


def test_a_damaged_cache_file_is_an_error_naming_it(tmp_path):
    cache = GenerationCache(tmp_path, {"backend": "x"})
    key = cache.key([{"role": "user", "content": "hi"}], True)
    cache.put(key, Generation("[1] > [2]", "stop", 3, 4))
    assert cache.get(key) == Generation("[1] > [2]", "stop", 3, 4)
    cache.path(key).write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(cache.path(key)))):
        cache.get(key)


KILL_AFTER = """
import os, runpy, sys
from dear.listwise.backends import hf
done, generate = [0], hf.TransformersBackend._generate_batch
def dying(self, prompts, *rest):  # the process dies as batch {k} + 1 starts, like a SIGKILL
    if done[0] == {k}:
        os._exit(137)
    done[0] += 1
    return generate(self, prompts, *rest)
hf.TransformersBackend._generate_batch = dying
sys.argv = ["evaluate.py", *sys.argv[1:]]
runpy.run_path("evaluate.py", run_name="__main__")
"""


def test_killed_evaluate_resumes_with_the_same_hydra_run_dir(toy_files, tmp_path):
    # 2 queries x 2 windows, one window a batch
    overrides = [
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"benchmark.docs={toy_files['docs']}",
        f"benchmark.queries={toy_files['queries']}",
        "pipeline=listwise",
        "listwise=tiny",
        "listwise.window_size=2",
        "listwise.step=1",
        "listwise.backend.batch_size=1",
    ]

    def run(out, script=None):
        cmd = (
            [sys.executable, "-c", script, *overrides]
            if script
            else [sys.executable, "evaluate.py", *overrides]
        )
        return subprocess.run(
            [*cmd, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600
        )

    killed = run(tmp_path / "run", KILL_AFTER.format(k=3))
    assert killed.returncode == 137 and not (tmp_path / "run" / "runs" / "listwise.trec").exists()
    resumed, whole = run(tmp_path / "run"), run(tmp_path / "whole")
    assert resumed.returncode == 0 == whole.returncode, resumed.stderr[-2000:]
    assert "listwise cache: 3 of 4 windows reused" in resumed.stdout + resumed.stderr
    assert "listwise cache: 0 of 4 windows reused" in whole.stdout + whole.stderr
    for name in ("runs/listwise.trec", "listwise.details.jsonl"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "whole" / name).read_text()
    outputs = [
        w["output"]
        for line in (tmp_path / "run" / "listwise.details.jsonl").read_text().splitlines()
        for w in json.loads(line)["windows"]
    ]
    # the generations themselves match, not only the fallback order
    assert len(outputs) == 4 and all(outputs)


@pytest.mark.slow
def test_acceptance_killed_dual_stage_on_noveleval_resumes(tmp_path):
    """`evaluate.py benchmark=noveleval pipeline=dual_stage listwise=tiny`, killed after 2 of its 6
    listwise batches (21 windows, batches of 4), re-run on the same hydra.run.dir."""
    from tests.helpers import shared

    shared("noveleval", "corpus.tsv")
    overrides = ["benchmark=noveleval", "pipeline=dual_stage", "listwise=tiny"]

    def run(out, script=None):
        cmd = (
            [sys.executable, "-c", script, *overrides]
            if script
            else [sys.executable, "evaluate.py", *overrides]
        )
        return subprocess.run(
            [*cmd, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=900
        )

    assert run(tmp_path / "run", KILL_AFTER.format(k=2)).returncode == 137
    resumed, whole = run(tmp_path / "run"), run(tmp_path / "whole")
    assert resumed.returncode == 0 == whole.returncode, resumed.stderr[-2000:]
    assert "listwise cache: 8 of 21 windows reused" in resumed.stdout + resumed.stderr
    run_file = "runs/listwise.trec"
    assert (tmp_path / "run" / run_file).read_text() == (tmp_path / "whole" / run_file).read_text()
