"""Listwise SFT data from the Stage-1 teacher's cached logits (dear.listwise.teacher_data): the
window in the first stage's order, the answer with judged positives first then the teacher's
order, the cache shared with Stage 1, and the SFT loss computed on the answer's logits only."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.distill.teacher import Teacher
from dear.errors import DataError
from dear.listwise.sft_data import ListwiseSFTDataModule, collate, tokenize_example
from dear.listwise.sft_module import ListwiseSFTModule
from dear.listwise.teacher_data import TeacherPermutations

DOCS = {f"d{i}": ("", f"passage number {i} " + "word " * 50) for i in range(12)}


class Source:
    """A Stage-1 training source in memory: q0 ranked by a first stage, q1 without a ranking."""

    def __init__(self, ranked: bool = True):
        self.ranked = ranked

    def describe(self) -> dict:
        return {"dataset": "toy", "ranked": self.ranked}

    def load(self):
        order = ("d5", "d1", "d7", "d0", "d3", "d9")
        q0 = TrainQuery(
            "q0",
            "first query",
            ("d1", "d3"),
            tuple(d for d in order if d not in ("d1", "d3")),
            order if self.ranked else (),
        )
        q1 = TrainQuery("q1", "second query", ("d2",), ("d4", "d6", "d8"), ())
        q2 = TrainQuery(
            "q2",
            "no positive in its window",
            ("d11",),
            ("d4", "d6", "d10"),
            ("d4", "d6", "d10", "d11"),
        )
        return [q0, q1, q2], DocStore("mem", DOCS)


class Scorer:
    """Teacher logit = the document's number (d9 best)."""

    calls = 0

    def score(self, rankings, desc=""):
        Scorer.calls += 1
        return [[float(c.docid[1:]) for c in r.candidates] for r in rankings]


@pytest.fixture
def teacher():
    Scorer.calls = 0
    return Teacher(
        {"_target_": "tests.listwise.test_teacher_data.Scorer", "model": "toy"},
        lambda **_: Scorer(),
    )


@pytest.fixture(scope="module")
def dear_prompt():
    return instantiate(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"))


def permutations(
    prompt, tmp_path, window_size: int = 5, source: Source | None = None, **kw
) -> TeacherPermutations:
    """The toy source's windows (``window_size`` passages, each cut to 4 words), the teacher cached under tmp_path."""
    return TeacherPermutations(
        source or Source(),
        prompt,
        window_size=window_size,
        max_words=4,
        cache_dir=str(tmp_path),
        **kw,
    )


def ids(line: str) -> list[int]:
    return [int(i) for i in re.findall(r"\[(\d+)\]", line)]


def test_window_keeps_first_stage_order_and_answer_puts_positives_first_then_teacher_order(
    teacher, dear_prompt, tmp_path
):
    builder = permutations(dear_prompt, tmp_path)
    examples = builder.examples(teacher)
    assert len(examples) == 3  # q0, q1 (shuffled), q2 (its positive d11 is 4th)
    first = examples[0]
    # The passage turns in BM25's order d5 d1 d7 d0 d3, each cut to 4 words.
    turns = [user for user, _ in first.history[1:]]
    assert turns == [f"[{i + 1}] passage number {d} word" for i, d in enumerate((5, 1, 7, 0, 3))]
    assert first.output.startswith("### Final Reranking: ")
    # Positives d1 (pos 2), d3 (pos 5) first, by teacher logit (d3 > d1); then d7 > d5 > d0.
    assert ids(first.output) == [5, 2, 3, 1, 4]
    assert first.think == "" and first.system == dear_prompt.system


def test_queries_without_a_positive_in_the_window_are_skipped_unless_asked(
    teacher, dear_prompt, tmp_path
):
    small = permutations(dear_prompt, tmp_path, window_size=3)
    assert len(small.examples(teacher)) == 2  # q2's top 3 lack d11
    kept = permutations(dear_prompt, tmp_path, window_size=3, require_positive=False)
    assert len(kept.examples(teacher)) == 3


def test_a_source_without_a_ranking_is_shuffled_by_seed(teacher, dear_prompt, tmp_path):
    windows = {
        seed: permutations(
            dear_prompt, tmp_path, window_size=6, source=Source(ranked=False), seed=seed
        ).window(Source(False).load()[0][0])
        for seed in (0, 0, 1)
    }
    assert sorted(windows[0]) == sorted(("d1", "d3", "d5", "d7", "d0", "d9"))
    assert windows[0] != ["d1", "d3", "d5", "d7", "d0", "d9"] or windows[1] != windows[0]


def test_shuffle_reorders_a_ranked_window_but_keeps_its_passages_and_the_target_follows(
    teacher, dear_prompt, tmp_path
):
    query = Source().load()[0][0]
    plain = permutations(dear_prompt, tmp_path)
    mixed = permutations(dear_prompt, tmp_path, shuffle=True, seed=3)
    assert sorted(mixed.window(query)) == sorted(plain.window(query)) and mixed.window(
        query
    ) == mixed.window(query)
    example = mixed.examples(teacher)[0]
    window = mixed.window(query)
    best = [window[i - 1] for i in ids(example.output)]
    # positives by teacher logit, then the rest: any input order
    assert best == [
        "d3",
        "d1",
        "d7",
        "d5",
        "d0",
    ]


def test_sampled_windows_each_hold_a_positive_from_the_pool_in_first_stage_order(
    teacher, dear_prompt, tmp_path
):
    def build(**kw):
        return permutations(dear_prompt, tmp_path, window_size=3, sampled_windows=6, **kw)

    q0, q1, q2 = Source().load()[0]
    pool = ["d5", "d1", "d7", "d0", "d3"]  # q0's first-stage top 5
    windows = build(pool=5).windows(q0)
    assert 1 < len(windows) <= 6 and len({frozenset(w) for w in windows}) == len(windows)
    for window in windows:
        assert len(window) == 3 and set(window) <= set(pool) and set(window) & {"d1", "d3"}
        assert window == sorted(window, key=pool.index)  # first-stage order
    assert build(pool=5).windows(q0) == windows  # seeded
    assert build(pool=5, seed=1).windows(q0) != windows
    # shuffled: the same passages per window, not always in first-stage order
    mixed = build(pool=5, shuffle=True).windows(q0)
    assert [sorted(w) for w in mixed] == [sorted(w) for w in windows]
    assert any(m != w for m, w in zip(mixed, windows, strict=True))
    # a positive outside the pool: no window; q1 (unranked) draws from its seeded order
    assert build(pool=3).windows(q2) == [] and all("d11" in w for w in build(pool=4).windows(q2))
    assert all("d2" in w for w in build().windows(q1))

    examples = build(pool=5).examples(teacher)
    assert [e.group for e in examples][: len(windows)] == ["q0"] * len(windows)
    assert {e.group for e in examples} == {"q0", "q1", "q2"}
    for example, window in zip(examples, windows, strict=False):
        best = [window[i - 1] for i in ids(example.output)]
        assert best[0] in ("d1", "d3")  # a judged positive first, then the teacher's order
        assert best[1:] == sorted(best[1:], key=lambda d: (d not in ("d1", "d3"), -int(d[1:])))
    assert len(build(pool=5, max_queries=4).examples(teacher)) == 4  # windows at most


def test_teacher_logits_are_cached_once_and_reused(teacher, dear_prompt, tmp_path):
    builder = permutations(dear_prompt, tmp_path)
    first = builder.examples(teacher)
    calls = Scorer.calls
    assert calls >= 1
    assert builder.examples(teacher) == first and Scorer.calls == calls  # read back, not rescored


def test_no_teacher_and_bad_settings_fail_naming_the_field(dear_prompt, tmp_path):
    with pytest.raises(DataError, match="need a teacher"):
        TeacherPermutations(Source(), dear_prompt, cache_dir=str(tmp_path)).examples(None)
    with pytest.raises(DataError, match="data.train.window_size"):
        TeacherPermutations(Source(), dear_prompt, window_size=1)
    with pytest.raises(DataError, match="data.train.max_words"):
        TeacherPermutations(Source(), dear_prompt, max_words=0)
    with pytest.raises(DataError, match="data.train.sampled_windows"):
        TeacherPermutations(Source(), dear_prompt, sampled_windows=-1)
    with pytest.raises(DataError, match="data.train.pool must be null or at least window_size=5"):
        TeacherPermutations(Source(), dear_prompt, window_size=5, sampled_windows=2, pool=4)


def test_datamodule_tokenizes_the_windows_for_response_only_training(
    teacher, dear_prompt, tiny_llama_causal, tmp_path
):
    builder = permutations(dear_prompt, tmp_path)
    data = ListwiseSFTDataModule(tiny_llama_causal, builder, teacher=teacher)
    data.setup()
    assert len(data.train_rows) == 3 and all(
        -100 in r["labels"] and r["labels"][-1] != -100 for r in data.train_rows
    )
    sampled = permutations(dear_prompt, tmp_path, window_size=3, sampled_windows=4)
    data = ListwiseSFTDataModule(tiny_llama_causal, sampled, teacher=teacher, val_fraction=0.34)
    data.setup()
    val = {r["group"] for r in data.val_rows}
    assert len(val) == 1 and not val & {
        r["group"] for r in data.train_rows
    }  # one query held out whole


def test_answer_only_logits_give_the_same_loss_as_full_labels(
    tiny_llama_causal, dear_prompt, teacher, tmp_path
):
    builder = permutations(dear_prompt, tmp_path)
    module = ListwiseSFTModule(
        tiny_llama_causal, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    )
    module.eval()
    data = ListwiseSFTDataModule(tiny_llama_causal, builder, teacher=teacher)
    rows = [tokenize_example(data.tokenizer, e) for e in builder.examples(teacher)]
    # unequal lengths: right padding
    rows[1]["input_ids"] = rows[1]["input_ids"][:-3] + [
        5,
        6,
        7,
        8,
    ]
    rows[1]["labels"] = rows[1]["labels"][:-3] + [5, 6, 7, 8]
    batch = collate(rows, data.tokenizer.pad_token_id)
    with torch.no_grad():
        full = module.model(**batch).loss
        assert torch.allclose(module(batch), full, atol=1e-5)
    with pytest.raises(ValueError, match="without response tokens"):
        module({**batch, "labels": torch.full_like(batch["labels"], -100)})


def test_listwise_export_runs_as_trained_and_settings_can_be_overridden(
    tiny_llama_causal, tmp_path
):
    from functools import partial

    from dear.listwise.exported import EXPORT_META, reranker_from_export
    from dear.listwise.reranker import ListwiseReranker
    from dear.listwise.synthetic import synthetic_examples

    compact = instantiate(OmegaConf.load(CONF_DIR / "prompt" / "compact.yaml"))
    module = ListwiseSFTModule(
        tiny_llama_causal,
        {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        generation={"max_new_tokens": 12, "dtype": "float32", "batch_size": 2},
        reranker=partial(ListwiseReranker, prompt=compact, window_size=3, step=2),
    )
    with torch.no_grad():
        for name, p in module.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # an adapter that changes the generations
    module.export(tmp_path / "run" / "export")
    reranker = reranker_from_export(str(tmp_path / "run"))  # the run dir finds its export/
    assert reranker.prompt == compact and (reranker.window_size, reranker.step) == (3, 2)
    assert reranker.backend.max_new_tokens == 12 and reranker.backend.identity["dtype"] == "float32"
    chats = [e.messages() for e in synthetic_examples(compact, 3, seed=5)]
    expected = module.export_reranker(tmp_path / "run" / "export").backend.generate(chats)
    assert reranker.backend.generate(chats) == expected
    overridden = reranker_from_export(
        str(tmp_path / "run"),
        top_k=5,
        prompt={"max_words": 7, "marker": None},  # null: the run's
        backend={"max_new_tokens": 4, "dtype": None},
    )
    assert (
        overridden.top_k == 5
        and overridden.prompt.max_words == 7
        and overridden.backend.max_new_tokens == 4
        and overridden.prompt.marker == compact.marker
        and overridden.backend.identity["dtype"] == "float32"
    )
    # constrained decoding: off unless the run's reranker set it; the command line wins either way
    assert not reranker.constrained
    assert reranker_from_export(str(tmp_path / "run"), constrained=True).constrained
    module.reranker = partial(module.reranker, constrained=True)
    module.export(tmp_path / "bound")
    assert json.loads((tmp_path / "bound" / EXPORT_META).read_text())["constrained"] is True
    assert reranker_from_export(str(tmp_path / "bound")).constrained
    assert not reranker_from_export(str(tmp_path / "bound"), constrained=False).constrained
    # scoring likewise: generate unless the run's reranker set first_id
    assert reranker.scoring == "generate"
    assert reranker_from_export(str(tmp_path / "run"), scoring="first_id").scoring == "first_id"
    module.reranker = partial(module.reranker, constrained=False, scoring="first_id")
    module.export(tmp_path / "scored")
    assert json.loads((tmp_path / "scored" / EXPORT_META).read_text())["scoring"] == "first_id"
    assert reranker_from_export(str(tmp_path / "scored")).scoring == "first_id"
    with pytest.raises(DataError, match=f"not a listwise SFT run or export \\(no {EXPORT_META}"):
        reranker_from_export(str(tmp_path))
    (tmp_path / "run" / "export" / EXPORT_META).write_text('{"prompt": []}')
    with pytest.raises(DataError, match="field 'prompt' must be a JSON object"):
        reranker_from_export(str(tmp_path / "run"))


def test_generation_dtype_auto_is_bf16_only_where_native(monkeypatch):
    from dear.listwise.backends import hf

    assert (
        hf.generation_dtype("float32") == "float32"
        and hf.generation_dtype("bfloat16") == "bfloat16"
    )
    monkeypatch.setattr(hf, "native_bf16", lambda device: True)
    assert hf.generation_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(hf, "native_bf16", lambda device: False)
    assert hf.generation_dtype("auto", "cpu") == "float32"
