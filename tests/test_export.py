"""python -m dear.export: a merged directory plain transformers loads, and --verify, which passes
on a fresh export and fails loudly on a corrupted one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dear.distill.losses import DistillLoss
from dear.distill.module import DistillModule
from dear.export import main, serving_pad_id
from dear.serve.pairs import PairTokenizer
from tests.helpers import ROOT, shared


def tiny_export(model: str, targets: list[str], pooling: str, run_dir):
    """A Stage-1 export of a LoRA student whose adapter and head are far from their initial values."""
    student = {
        "model": model,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": targets},
        "pooling": pooling,
        "dtype": "float32",
    }
    module = DistillModule(student, DistillLoss("ranknet", alpha=0.0))
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return module.export(run_dir / "export")


def test_export_and_verify_pass_on_noveleval_and_fail_on_a_corrupted_merge(
    tiny_llama_cls, tmp_path
):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shared("noveleval", "qrels.txt")
    tiny_export(tiny_llama_cls, ["q_proj", "v_proj"], "last", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "dear.export", str(tmp_path), "--verify", "benchmark=noveleval"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "identical rankings 21/21 queries" in proc.stdout and "PASSED" in proc.stdout
    merged = tmp_path / "merged"
    report = json.loads((merged / "verify_noveleval.json").read_text())
    assert report["max_abs_diff"] <= 1e-4 and report["pairs"] == 420
    assert report["metrics"]["training_scorer"] == report["metrics"]["merged_transformers"]
    assert not (merged / "adapter_config.json").exists()  # merged: no peft needed to load it
    plain = AutoModelForSequenceClassification.from_pretrained(merged)
    assert (
        plain.config.pad_token_id == AutoTokenizer.from_pretrained(merged).pad_token_id
        and plain.num_labels == 1
    )

    # A merge that lost the adapter's effect on one layer (the FlagEmbedding #814 failure mode).
    corrupted = tmp_path / "corrupted"
    shutil.copytree(merged, corrupted)
    weights = load_file(corrupted / "model.safetensors")
    key = next(k for k in weights if k.endswith("layers.0.self_attn.v_proj.weight"))
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
    save_file(weights, corrupted / "model.safetensors", metadata={"format": "pt"})
    assert main([str(tmp_path), "--merged", str(corrupted), "--verify", "benchmark=noveleval"]) == 1
    assert not json.loads((corrupted / "verify_noveleval.json").read_text())["passed"]


def test_an_encoder_export_verifies_on_files(tiny_bert_cls, tmp_path, toy_files, capsys):
    tiny_export(tiny_bert_cls, ["query", "value"], "model", tmp_path)
    files = [
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"benchmark.docs={toy_files['docs']}",
        f"benchmark.queries={toy_files['queries']}",
    ]
    assert main([str(tmp_path / "export"), "--out", str(tmp_path / "m"), "--verify", *files]) == 0
    assert "identical rankings 2/2 queries" in capsys.readouterr().out


def test_verify_needs_a_benchmark(tiny_bert_cls, tmp_path):
    from dear.errors import DataError

    tiny_export(tiny_bert_cls, ["query", "value"], "model", tmp_path)
    with pytest.raises(DataError, match="name the benchmark"):
        main([str(tmp_path), "--verify", "metrics=[nDCG@10]"])
    with pytest.raises(DataError, match="not a Stage-1 run"):
        main([str(tmp_path / "nowhere")])


def test_reference_pooling_plain_transformers_pools_the_last_padding_position(tiny_llama_cls):
    """DeAR's reference input through plain transformers: 228 tokens, mask 0 on the padding,
    pad_token_id 0 — the library pools position 227, computed here from the backbone directly."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_cls)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_cls, num_labels=1).eval()
    model.config.pad_token_id = serving_pad_id(None, tokenizer.pad_token_id, "reference")
    # the DeAR defaults: 32 / 193 tokens, padded to 228
    settings = {
        "pooling": "reference",
        "template": {},
    }
    batch = PairTokenizer(tokenizer, settings).batch(
        [
            ("what is a llama", "", "the llama is a camelid"),
            ("who invented the light bulb", "Edison", "thomas edison " * 150),
        ]
    )
    assert batch["input_ids"].shape == (2, 228) and model.config.pad_token_id == 0
    query_tokens = len(
        tokenizer("query: who invented the light bulb", add_special_tokens=False)["input_ids"]
    )
    real = 2 + query_tokens + 193  # two BOS, the query, the document cut to 193
    assert batch["attention_mask"][1].tolist() == [1] * real + [0] * (228 - real)
    assert (batch["input_ids"][:, -1] == tokenizer.pad_token_id).all()
    with torch.inference_mode():
        plain = model(**batch).logits[:, 0]
        hidden = model.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        direct = model.score(hidden[:, 227]).squeeze(-1)
    np.testing.assert_allclose(plain.numpy(), direct.numpy(), atol=1e-6)
    with pytest.raises(Exception, match="other than id 0"):
        serving_pad_id(None, 0, "reference")


@pytest.mark.gpu
def test_vllm_serves_the_merged_last_pooling_export_with_client_side_token_ids(
    tiny_llama_cls, tmp_path
):
    """vLLM (docs/serving.md: the version and flags) scores our token ids like transformers."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (vLLM)")
    vllm = pytest.importorskip(
        "vllm", reason="vLLM is not installed (not installable on the CPU-only machine)"
    )
    from transformers import AutoTokenizer

    from dear.data.contract import Candidate, Query, Ranking
    from dear.export import merge, plain_scores
    from dear.serve.pairs import read_settings

    merged = merge(
        tiny_export(tiny_llama_cls, ["q_proj", "v_proj"], "last", tmp_path), tmp_path / "merged"
    )
    ranking = Ranking(
        Query("q", "what is a llama"),
        [Candidate("a", "the llama is a camelid"), Candidate("b", "cats")],
    )
    expected = plain_scores(merged, [ranking], device="cuda")[0]
    pairs = PairTokenizer(AutoTokenizer.from_pretrained(merged), read_settings(merged))
    llm = vllm.LLM(
        model=str(merged),
        runner="pooling",
        convert="classify",
        dtype="float32",
        pooler_config=vllm.config.PoolerConfig(pooling_type="LAST"),
    )
    prompts = [
        {"prompt_token_ids": pairs.encode("what is a llama", c.title, c.text)[0]}
        for c in ranking.candidates
    ]
    got = np.array([o.outputs.probs[0] for o in llm.classify(prompts)])
    # One-label classify applies a sigmoid in some vLLM versions: compare in the activation's space.
    assert np.allclose(got, expected, atol=1e-3) or np.allclose(
        got, 1 / (1 + np.exp(-expected)), atol=1e-3
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "{not json",
            "dear_scorer.json:1: invalid JSON (Expecting property name enclosed in double quotes)",
        ),
        ("[1, 2]", "dear_scorer.json: expected an object, found a list: [1, 2]"),
        (
            '{"template": "dear", "pooling": "last"}',
            "field 'template': expected dict, found 'dear'",
        ),
        (
            '{"kind": "bi_encoder", "inputs": {}, "logit_scale": "20"}',
            "field 'logit_scale': expected",
        ),
    ],
)
def test_a_broken_export_description_is_one_line_naming_the_file(tmp_path, text, expected):
    from dear.errors import DataError
    from dear.rerank.pointwise import scorer_from_export

    (tmp_path / "dear_scorer.json").write_text(text)
    with pytest.raises(
        DataError, match=re.escape(str(tmp_path / "dear_scorer.json")) + r"(:\d+)?: "
    ) as err:
        scorer_from_export(str(tmp_path))
    assert expected in str(err.value) and "\n" not in str(err.value)
