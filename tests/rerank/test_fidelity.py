"""DeAR-P fidelity on the real tokenizers: the pair ids and the pooled hidden state the released
checkpoints were trained on (the reference's ``pointwise_reranker/data.py`` + ``modeling.py``).

Each reference step is written out here independently of ``dear.rerank``: HF ``encode`` with
truncation, ``prepare_for_model`` as transformers 4.x did it for each tokenizer class, padding to
228 with the pad token (EOS when none), ``config.pad_token_id`` = 0 and HF's own classifier head.
Skipped when ``../shared/data/tokenizers`` is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dear.data.contract import Candidate, Query, Ranking
from dear.models.tiny import build_tiny_on_tokenizer
from dear.rerank.pointwise import CrossEncoderScorer
from tests.helpers import ROOT, shared

# name → (tokenizer dir, architecture, template overrides, BOS per segment added by prepare_for_model)
TOKENIZERS = {
    "llama3": ("llama3/hf_llama3.1_8b_instruct", "llama", {}, False),
    "llama2": (
        "llama2/hf_llama2_legacy",
        "llama",
        {"segment_specials": True, "overflow": "only_first"},
        True,
    ),
    "qwen25": ("qwen2.5", "qwen2", {}, False),
}
LONG_QUERY = "what are the long term effects of " + "chronic " * 40 + "sleep deprivation"


def dl21_rankings(queries: int, hits: int) -> list[Ranking]:
    data = json.loads(shared("trec-dl21", "retrieve_results_dl21_top100.json").read_text())
    return [
        Ranking(
            Query(str(e["hits"][0]["qid"]), e["query"]),
            [Candidate(h["docid"], h["content"]) for h in e["hits"][:hits]],
        )
        for e in data[:queries]
    ]


def reference_pair(
    tok, query: str, title: str, text: str, segment_bos: bool, overflow: str
) -> list[int]:
    """The reference's ids for one pair (transformers 4.x ``prepare_for_model`` semantics)."""
    bos = (
        tok.bos_token_id
        if tok.bos_token_id is not None
        else tok.convert_tokens_to_ids("<|endoftext|>")
    )
    q = tok.encode("query: " + query, add_special_tokens=False, max_length=32, truncation=True)
    d = tok.encode(
        "document: " + title + " " + text,
        add_special_tokens=False,
        max_length=196 - 3,
        truncation=True,
    )
    first, second = [bos] + q, [bos] + d
    # LlamaTokenizerFast.build_inputs_with_special_tokens: BOS per segment
    extra = 2 if segment_bos else 0
    excess = len(first) + len(second) + extra - 228
    if excess > 0:  # truncation='only_first' (training collator) / 'only_second' (inference.py)
        if overflow == "only_first":
            first = first[:-excess]
        else:
            second = second[:-excess]
    return ([bos] + first + [bos] + second) if segment_bos else first + second


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def model_dir(request, tmp_path_factory):
    folder, arch, _, _ = TOKENIZERS[request.param]
    directory = build_tiny_on_tokenizer(
        tmp_path_factory.mktemp(request.param) / "model",
        shared("tokenizers", folder),
        arch,
        hidden=32,
    )
    return request.param, directory


def scorer_for(name: str, directory: str, **kwargs) -> CrossEncoderScorer:
    template = {"doc_max_len": 193, **TOKENIZERS[name][2]}
    return CrossEncoderScorer(directory, template=template, **kwargs)


def test_pair_ids_equal_the_references_construction_on_real_passages(model_dir):
    from transformers import AutoTokenizer

    name, directory = model_dir
    _, _, template, segment_bos = TOKENIZERS[name]
    rankings = dl21_rankings(3, 20)
    rankings.append(
        Ranking(
            Query("long", LONG_QUERY),
            [Candidate("long", " ".join(["passage words"] * 200), "A title")],
        )
    )
    tok = AutoTokenizer.from_pretrained(directory)
    ids, _ = scorer_for(name, directory).encode(rankings)
    expected = [
        reference_pair(
            tok, r.query.text, c.title, c.text, segment_bos, template.get("overflow", "only_second")
        )
        for r in rankings
        for c in r.candidates
    ]
    assert ids == expected
    # Llama-2's long pair overflows and is cut
    assert max(map(len, ids)) == (228 if segment_bos else 227)


def test_scifact_abstracts_are_cut_at_193_tokens(model_dir):
    import ir_datasets
    from transformers import AutoTokenizer

    name, directory = model_dir
    shared("ir_datasets")
    dataset = ir_datasets.load("beir/scifact/test")
    docs = [doc for _, doc in zip(range(20), dataset.docs_iter())]
    ranking = Ranking(
        Query("q", "does vitamin d prevent fractures"),
        [Candidate(d.doc_id, d.text, d.title) for d in docs],
    )
    tok = AutoTokenizer.from_pretrained(directory)
    ids, _ = scorer_for(name, directory).encode([ranking])
    _, _, template, segment_bos = TOKENIZERS[name]
    assert ids == [
        reference_pair(
            tok,
            ranking.query.text,
            d.title,
            d.text,
            segment_bos,
            template.get("overflow", "only_second"),
        )
        for d in docs
    ]


def padded_reference_scores(directory: str, ids: list[list[int]]) -> np.ndarray:
    """HF's own head on every pair right-padded to 228 with the pad token (EOS when none), mask 0
    on the padding, ``pad_token_id`` forced to 0: what the released checkpoints were trained on."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    fill = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1).eval()
    assert model.config.pad_token_id is None  # as released; the reference forces 0
    model.config.pad_token_id = 0
    padded = torch.full((len(ids), 228), fill)
    mask = torch.zeros_like(padded)
    for row, x in enumerate(ids):
        padded[row, : len(x)], mask[row, : len(x)] = torch.tensor(x), 1
    with torch.inference_mode():
        return model(input_ids=padded, attention_mask=mask).logits.squeeze(-1).numpy()


def test_exact_mode_equals_the_padded_reference_computation(model_dir):
    name, directory = model_dir
    rankings = dl21_rankings(2, 16)
    rankings.append(
        Ranking(
            Query("long", LONG_QUERY),
            [Candidate("long", " ".join(["passage words"] * 200), "A title")],
        )
    )
    scorer = scorer_for(name, directory, max_batch_pairs=8)
    assert scorer.pooling == "reference"  # the default for decoders
    ours = np.concatenate(scorer.score(rankings))
    ids, _ = scorer.encode(rankings)
    reference = padded_reference_scores(directory, ids)
    assert np.abs(ours - reference).max() <= 1e-4
    last = np.concatenate(scorer_for(name, directory, pooling="last").score(rankings))
    assert np.abs(last - reference).max() > 1e-3  # the last real token is a different state


def test_evaluate_cli_ranks_a_rank_llm_json_as_the_reference_pipeline(tmp_path):
    """The issue's command: a tiny random Llama-3 classifier (pad_token_id unset) through
    ``pointwise=dear_8b_ce`` ranks every query exactly as the reference scores it."""
    directory = build_tiny_on_tokenizer(
        tmp_path / "model", shared("tokenizers", "llama3", "hf_llama3.1_8b_instruct")
    )
    data = json.loads(shared("trec-dl21", "retrieve_results_dl21_top100.json").read_text())[:4]
    for entry in data:
        entry["hits"] = entry["hits"][:12]
    candidates, qrels = tmp_path / "top12.json", tmp_path / "qrels.txt"
    candidates.write_text(json.dumps(data))
    qids = {str(e["hits"][0]["qid"]) for e in data}
    qrels.write_text(
        "".join(
            line + "\n"
            for line in shared("trec-dl21", "qrels.dl21-passage.txt").read_text().splitlines()
            if line.split()[0] in qids
        )
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "benchmark=files",
            f"benchmark.candidates={candidates}",
            f"benchmark.qrels={qrels}",
            "pipeline=pointwise",
            "pointwise=dear_8b_ce",
            f"pointwise.model={directory}",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    ran: dict[str, list[str]] = {}
    for line in (out / "runs" / "pointwise.trec").read_text().splitlines():
        qid, _, docid, *_ = line.split()
        ran.setdefault(qid, []).append(docid)
    for entry in data:
        ids = [
            reference_pair(tok, entry["query"], "", h["content"], False, "only_second")
            for h in entry["hits"]
        ]
        scores = padded_reference_scores(directory, ids)
        expected = [entry["hits"][i]["docid"] for i in np.argsort(-scores, kind="stable")]
        assert ran[str(entry["hits"][0]["qid"])] == expected
