"""Generation back ends: transformers (tiny model), an OpenAI-compatible server on loopback, vLLM, and
the engine as a config choice (conf/engine/listwise/)."""

from __future__ import annotations

import copy
import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from dear.data.contract import Candidate, Query, Ranking
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.backends.openai import OpenAIChatBackend
from dear.listwise.prompts import ListwisePrompt
from dear.listwise.reranker import ListwiseReranker
from tests.helpers.configs import compose_resolved

CHATS = [
    [{"role": "user", "content": text}]
    for text in [
        "the llama",
        "passages are ranked by their relevance to the search query using a model",
        "[1] > [2]",
    ]
]


@pytest.fixture(scope="module")
def backend(tiny_llama_causal) -> TransformersBackend:
    b = TransformersBackend(
        tiny_llama_causal, max_new_tokens=12, batch_size=8, dtype="float32", device="cpu"
    )
    b.model.lm_head.weight.data *= 50  # decisive argmaxes: batch and single runs must agree exactly
    return b


def test_batched_left_padded_generation_equals_one_at_a_time(backend):
    together = backend.generate(CHATS)
    alone = [backend.generate([chat])[0] for chat in CHATS]
    assert together == alone
    assert [g.prompt_tokens for g in together] == [backend.count_tokens(c) for c in CHATS]
    # really different lengths, so really padded
    assert len({g.prompt_tokens for g in together}) == 3


def test_batched_rows_are_prefilled_alone_without_a_padding_mask(backend, monkeypatch):
    forwards = []
    forward = backend.model.forward
    monkeypatch.setattr(
        backend.model, "forward", lambda *a, **kw: (forwards.append(kw), forward(*a, **kw))[1]
    )
    done = {}
    backend.generate(CHATS, on_done=lambda i, gen: done.setdefault(i, gen))
    prefills = [kw for kw in forwards if kw["input_ids"].shape[1] > 1]
    assert [kw["input_ids"].shape[0] for kw in prefills] == [1, 1, 1] and all(
        kw.get("attention_mask") is None for kw in prefills
    )
    assert sorted(done) == [0, 1, 2] and all(isinstance(g.text, str) for g in done.values())


def hf_generate(backend, prompts, seed=None):
    """``model.generate`` itself on the left-padded batch, with the back end's generation config."""
    from dear.models.batching import pad

    ids, mask = pad(prompts, backend.tokenizer.pad_token_id, left=True)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=backend.generation_config
        )
    return out[:, ids.shape[1] :].tolist()


def test_the_decode_loop_makes_generates_greedy_choices(backend):
    prompts = [backend.renderer.ids(c) for c in CHATS]
    tok = backend.tokenizer
    same_length = [
        prompts[0],
        [tok.bos_token_id] + tok("a dog", add_special_tokens=False)["input_ids"],
    ]
    same_length[1] = same_length[1] + [same_length[1][-1]] * (len(prompts[0]) - len(same_length[1]))
    # too short for a per-row prefill: the masked batch pass
    one_token = [
        [tok.bos_token_id],
        prompts[1],
    ]
    for batch in [[p] for p in prompts] + [prompts, same_length, one_token, [[tok.bos_token_id]]]:
        assert backend._decode(batch) == hf_generate(backend, batch), [len(p) for p in batch]


def test_the_decode_loop_stops_when_every_row_has_stopped(backend, monkeypatch):
    def stop_at(token):  # the back end's stop ids, which its generation config carries to generate
        config = copy.deepcopy(backend.generation_config)
        config.eos_token_id = [token]
        monkeypatch.setattr(backend, "generation_config", config)
        monkeypatch.setattr(backend, "stop", [token])

    prompt = backend.renderer.ids(CHATS[0])
    row = hf_generate(backend, [prompt])[0]
    stop_at(row[0])
    assert backend._decode([prompt]) == [row[:1]]  # stopped at once: no further forward passes
    stop_at(row[3])
    assert backend._decode([prompt, prompt]) == [row[:4], row[:4]]


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 0, 0.9), (0.5, 50, 0.9), (1.0, 5, 1.0)]
)
def test_the_decode_loop_samples_as_generate_does(tiny_llama_causal, temperature, top_k, top_p):
    b = TransformersBackend(
        tiny_llama_causal,
        max_new_tokens=12,
        do_sample=True,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        dtype="float32",
        device="cpu",
    )
    prompts = [b.renderer.ids(chat) for chat in CHATS]
    for batch in [[p] for p in prompts] + [prompts]:  # alone, and left-padded rows prefilled alone
        torch.manual_seed(3)
        ours = b._decode(batch)
        assert ours == hf_generate(b, batch, seed=3)
        assert ours != hf_generate(b, batch, seed=4)  # really sampled: another seed, another text


def test_max_new_tokens_must_be_positive(tiny_llama_causal):
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        TransformersBackend(tiny_llama_causal, max_new_tokens=0, dtype="float32", device="cpu")


def test_sampling_is_reproducible_from_the_seed(tiny_llama_causal):
    def sampled(seed):
        b = TransformersBackend(
            tiny_llama_causal,
            max_new_tokens=12,
            do_sample=True,
            temperature=1.0,
            seed=seed,
            dtype="float32",
            device="cpu",
        )
        return b.identity, [g.text for g in b.generate(CHATS)]

    (identity, first), (_, again), (other_identity, other) = sampled(0), sampled(0), sampled(1)
    assert first == again and other != first
    assert identity["seed"] == 0 and other_identity["seed"] == 1  # part of the cache key


def test_stop_tokens_and_the_token_limit_are_reported(backend):
    eot = backend.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot in backend.stop and backend.tokenizer.eos_token_id in backend.stop
    gen = backend._completion([100, 101, eot, 102], prompt_tokens=3)
    assert gen.finish == "stop" and gen.completion_tokens == 3 and not gen.truncated
    cut = backend._completion([100, 101, 102, 103], prompt_tokens=3)
    assert cut.finish == "length" and cut.truncated and cut.completion_tokens == 4


def test_chat_template_or_raw_text(backend):
    chat = backend.renderer.ids(CHATS[0], chat=True)
    raw = backend.renderer.ids(CHATS[0], chat=False)
    tok = backend.tokenizer
    assert tok.decode(chat).startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    assert tok.decode(chat).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert raw == [tok.bos_token_id] + tok("the llama", add_special_tokens=False)["input_ids"]


def test_rendering_is_memoised_by_content_and_never_shared(tiny_llama_causal):
    from transformers import AutoTokenizer

    from dear.listwise.backends.base import TokenizerRenderer

    calls = []
    renderer = TokenizerRenderer(AutoTokenizer.from_pretrained(tiny_llama_causal), memo_size=2)
    render = renderer._render
    renderer._render = lambda m, chat: (calls.append(chat), render(m, chat))[1]
    first = renderer.ids(CHATS[0])
    first.append(-1)  # a caller's change must not reach the memo
    assert renderer.ids(CHATS[0]) == render(CHATS[0], True) and len(calls) == 1
    # chat is in the key
    assert renderer.ids(CHATS[0], chat=False) != renderer.ids(CHATS[0]) and len(calls) == 2
    renderer.ids(CHATS[1])
    renderer.ids(CHATS[2])  # beyond memo_size: the oldest entries go
    renderer.ids(CHATS[0])
    assert len(calls) == 5 and len(renderer.memo) == 2


def test_reranker_on_the_tiny_model_runs_and_falls_back(tiny_llama_causal):
    prompt = ListwisePrompt(
        name="t",
        prefix="{num} for {query}\n",
        passage="[{id}] {text}",
        suffix="\n{query}",
        marker="### Final Reranking:",
        max_words="auto",
    )
    backend = TransformersBackend(
        tiny_llama_causal, max_new_tokens=8, context_size=200, dtype="float32"
    )
    ranking = Ranking(
        Query("q", "llama"), [Candidate(f"d{i}", "the llama is a camelid " * 30) for i in range(5)]
    )
    out = ListwiseReranker(backend, prompt, 4, 2).rerank([ranking])[0]
    # random weights: fallback
    assert [c.docid for c in out.candidates] == [f"d{i}" for i in range(5)]
    assert out.meta["parse"] == "fallback" and all(
        w["prompt_tokens"] <= 192 for w in out.meta["windows"]
    )


def test_openai_backend_reads_reasoning_and_finish_reason(chat_server, monkeypatch):
    monkeypatch.setenv("DEAR_TEST_KEY", "k")
    answers = {
        "a": ("[2] > [1]", "stop", {"reasoning_content": "thinking hard"}),
        "b": ("[1] >", "length"),
    }
    chat_server.respond = lambda body: answers[body["messages"][-1]["content"]]
    backend = OpenAIChatBackend(
        "m", base_url=chat_server.url, api_key_env="DEAR_TEST_KEY", max_new_tokens=33
    )
    first, second = backend.generate(
        [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    )
    assert first.text == "<think>\nthinking hard\n</think>\n[2] > [1]" and not first.truncated
    assert second.truncated and second.completion_tokens == 2
    assert {r["max_tokens"] for r in chat_server.requests} == {33} and chat_server.requests[0][
        "temperature"
    ] == 0.0


def test_listwise_stage_over_an_openai_endpoint(chat_server, monkeypatch):
    monkeypatch.setenv("DEAR_TEST_KEY", "k")
    chat_server.respond = lambda body: (
        "Passage [3] answers it.\n### Final Reranking: [3] > [1] > [2]"
    )
    backend = OpenAIChatBackend(
        "m", base_url=chat_server.url, api_key_env="DEAR_TEST_KEY", max_concurrency=4
    )
    prompt = ListwisePrompt(
        name="t",
        system="s",
        prefix="{num} for {query}",
        prefix_reply="ok",
        passage="[{id}] {text}",
        passage_reply="got [{id}]",
        suffix="rank for {query}",
        marker="### Final Reranking:",
    )
    rankings = [
        Ranking(Query(f"q{i}", "x"), [Candidate(f"d{j}", "t") for j in range(3)]) for i in range(5)
    ]
    reranker = ListwiseReranker(backend, prompt)
    out = reranker.rerank(rankings)
    assert all([c.docid for c in r.candidates] == ["d2", "d0", "d1"] for r in out)
    assert out[0].meta["justification"] == "Passage [3] answers it."
    assert reranker.stage_metrics()["parse_clean"] == 1.0 and len(chat_server.requests) == 5
    assert [m["role"] for m in chat_server.requests[0]["messages"]] == ["system"] + [
        "user",
        "assistant",
    ] * 4 + ["user"]


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (optional, CUDA only)"
)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA device")
def test_vllm_matches_transformers_greedy(tiny_llama_causal):
    from dear.listwise.backends.vllm import VLLMBackend

    vllm = VLLMBackend(
        tiny_llama_causal, max_new_tokens=8, dtype="float32", gpu_memory_utilization=0.2
    )
    hf = TransformersBackend(tiny_llama_causal, max_new_tokens=8, dtype="float32")
    assert [g.text for g in vllm.generate(CHATS)] == [g.text for g in hf.generate(CHATS)]


# The engine, a choice of its own (conf/engine/listwise/): what the configs resolved to before it
# was (captured at 9a095d0, when listwise=dear_8b_v1 had a dear_8b_v1_vllm twin). The transformers
# engine must resolve to exactly this (the figures and the generation caches depend on it).
LISTWISE_VLLM = "engine/listwise@listwise=vllm"
WAS_DEAR_8B_V1 = {
    "_target_": "dear.listwise.backends.hf.TransformersBackend",
    "model": "abdoelsayed/dear-8b-reranker-listwise-v1",
    "adapter": None,
    "revision": None,
    "max_new_tokens": 1024,
    "batch_size": 8,
    "max_batch_tokens": 131072,
    "do_sample": True,
    "temperature": 0.5,
    "top_k": 50,
    "top_p": 0.9,
    "seed": 0,
    "context_size": 16384,
    "dtype": "auto",
    "device": "auto",
}
WAS_DEAR_8B_V1_VLLM = {
    "_target_": "dear.listwise.backends.vllm.VLLMBackend",
    "model": "abdoelsayed/dear-8b-reranker-listwise-v1",
    "adapter": None,
    "max_new_tokens": 1024,
    "temperature": 0.5,
    "top_k": 50,
    "top_p": 0.9,
    "context_size": 16384,
    "dtype": "auto",
    "gpu_memory_utilization": 0.9,
    "tensor_parallel_size": 1,
    "max_lora_rank": 64,
    "seed": 0,
}
# The configs built on dear_8b_v1, as they differ from it.
BUILT_ON_DEAR_8B_V1 = {
    "dear_8b_v1": {},
    "dear_8b_v1_greedy": {"do_sample": False},
    "dear_8b_v1_card": {"max_new_tokens": 50, "do_sample": False},
    "dear_8b_v1_lora": {"model": "abdoelsayed/dear-8b-reranker-listwise-lora-v1"},
    "llama31_8b_instruct": {"model": "meta-llama/Llama-3.1-8B-Instruct"},
}


def _listwise_cfg(name: str, *overrides: str) -> dict:
    cfg = compose_resolved(
        "evaluate", ["benchmark=noveleval", "pipeline=listwise", f"listwise={name}", *overrides]
    )
    return cfg["pipeline"]["stages"]["listwise"]["reranker"]


@pytest.mark.parametrize("name", BUILT_ON_DEAR_8B_V1)
def test_transformers_engine_resolves_exactly_as_before(name):
    assert _listwise_cfg(name)["backend"] == {**WAS_DEAR_8B_V1, **BUILT_ON_DEAR_8B_V1[name]}
    assert _listwise_cfg(name, "engine/listwise@listwise=transformers") == _listwise_cfg(name)


def test_vllm_engine_resolves_as_the_removed_vllm_file():
    """The removed file's back end, plus the two settings VLLMBackend now takes so that a model's
    decoding is written once (``revision: null``, and ``do_sample: true``, which samples at the
    temperature as before); the prompt and the window are the transformers engine's, as they were."""
    vllm, hf = _listwise_cfg("dear_8b_v1", LISTWISE_VLLM), _listwise_cfg("dear_8b_v1")
    assert vllm["backend"] == {**WAS_DEAR_8B_V1_VLLM, "revision": None, "do_sample": True}
    assert {k: v for k, v in vllm.items() if k != "backend"} == {
        k: v for k, v in hf.items() if k != "backend"
    }
    assert (vllm["top_k"], vllm["window_size"], vllm["step"]) == (30, 20, 10)
    assert (vllm["prompt"]["name"], vllm["prompt"]["max_words"], vllm["prompt"]["auto_cap"]) == (
        "dear",
        "auto",
        300,
    )


@pytest.fixture
def fake_vllm(monkeypatch, tiny_llama_causal):
    """A stand-in ``vllm`` module (the real one needs CUDA) recording what VLLMBackend asks of it."""
    from transformers import AutoTokenizer

    asked = {}

    class LLM:
        def __init__(self, **kwargs):
            asked["llm"] = kwargs
            self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=4096))

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_llama_causal)

    modules = {name: types.ModuleType(name) for name in ("vllm", "vllm.lora", "vllm.lora.request")}
    modules["vllm"].LLM = LLM
    modules["vllm"].SamplingParams = lambda **kwargs: asked.setdefault("sampling", kwargs)
    modules["vllm.lora.request"].LoRARequest = lambda *args: args
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return asked


@pytest.mark.parametrize("name, temperature", [("dear_8b_v1", 0.5), ("dear_8b_v1_greedy", 0.0)])
def test_vllm_engine_builds_with_the_model_files_decoding(
    fake_vllm, tiny_llama_causal, name, temperature
):
    """dear_8b_v1 on vLLM: the cache identity the removed dear_8b_v1_vllm built (its windows stay
    cached); the greedy config on vLLM: temperature 0."""
    backend = instantiate(
        {**_listwise_cfg(name, LISTWISE_VLLM)["backend"], "model": tiny_llama_causal}
    )
    assert backend.identity == {
        "backend": "vllm",
        "model": tiny_llama_causal,
        "adapter": None,
        "dtype": "auto",
        "max_new_tokens": 1024,
        "temperature": temperature,
        "top_k": 50,
        "top_p": 0.9,
        "seed": 0,
    }
    assert {
        k: fake_vllm["sampling"][k] for k in ("max_tokens", "temperature", "top_k", "top_p")
    } == {"max_tokens": 1024, "temperature": temperature, "top_k": 50, "top_p": 0.9}
    assert fake_vllm["llm"] == {
        "model": tiny_llama_causal,
        "revision": None,
        "dtype": "auto",
        "max_model_len": 16384,
        "seed": 0,
        "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 1,
        "enable_lora": False,
        "max_lora_rank": 64,
    }
    assert backend.context_size == 16384


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_engine_without_vllm_says_what_to_install(tiny_llama_causal):
    with pytest.raises(Exception) as caught:
        instantiate(
            {**_listwise_cfg("dear_8b_v1", LISTWISE_VLLM)["backend"], "model": tiny_llama_causal}
        )
    assert isinstance(caught.value.__cause__, ImportError)
    assert "needs vLLM (pip install vllm, CUDA only)" in str(caught.value.__cause__)
