"""The `dear` prompt against the DeAR reference's DeAR-L messages, on the real Llama-3.1-Instruct
tokenizer, and the `auto` word budget on real token counts.

The reference construction below is written from the facts of `listwise_rerank/prompts.py`
(`build_messages`) and `clients.py` (HFClient) of DataScienceUIBK/DeAR-Reranking, independently
of `dear.listwise.prompts`.
"""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR
from dear.data.candidates import rankllm_json
from dear.listwise.backends.base import Generation, TokenizerRenderer
from dear.listwise.prompts import fit_window
from dear.listwise.reranker import ListwiseReranker
from tests.helpers import shared

STEPS = (
    "Please follow the steps below:\n"
    "Step 1. List the information requirements to answer the query.\n"
    "Step 2. For each requirement, find the passages containing that information.\n"
    "Step 3. Rank passages that best cover clear and diverse information. Include all passages.\n"
)


def reference_messages(query: str, contents: list[str], words: int = 300) -> list[dict[str, str]]:
    """The reference's message list for one window of rank_llm `content` strings."""
    n = len(contents)
    msgs = [
        {
            "role": "system",
            "content": "You are RankLLM, an assistant that ranks passages by relevance to the query.",
        },
        {
            "role": "user",
            "content": f"I will provide you with {n} passages, each indicated by number identifier [].\n"
            f"Rank the passages based on their relevance to query: {query}.",
        },
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for rank, content in enumerate(contents, start=1):
        snippet = " ".join(content.replace("Title: Content: ", "").strip().split()[:words])
        msgs += [
            {"role": "user", "content": f"[{rank}] {snippet}"},
            {"role": "assistant", "content": f"Received passage [{rank}]."},
        ]
    last = (
        f"Search Query: {query}.\nRank the {n} passages above based on their relevance to the search query. "
        "The passages should be listed in descending order using identifiers.\n"
        + STEPS
        + "Output format strictly: [2] > [1] > [3] ... Only output the ranking using identifiers; no explanations."
    )
    return msgs + [{"role": "user", "content": last}]


@pytest.fixture(scope="module")
def llama31():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        str(shared("tokenizers", "llama3", "hf_llama3.1_8b_instruct"))
    )


@pytest.fixture(scope="module")
def dl21() -> list[dict]:
    return json.loads(shared("trec-dl21", "retrieve_results_dl21_top100.json").read_text())


def dear_prompt(**overrides):
    return instantiate(
        OmegaConf.merge(OmegaConf.load(CONF_DIR / "prompt" / "dear.yaml"), overrides)
    )


def test_dear_messages_render_like_the_reference_on_the_real_chat_template(llama31, dl21):
    for item in dl21[:5]:
        contents = [h["content"] for h in item["hits"][:20]]
        contents[3] = "Title: Content: " + contents[3]  # rank_llm's untitled passages (BEIR JSONs)
        ours = dear_prompt().messages(item["query"], contents, 300)
        ref = reference_messages(item["query"], contents)
        assert ours == ref
        ref_text = llama31.apply_chat_template(ref, add_generation_prompt=True, tokenize=False)
        ours_ids = TokenizerRenderer(llama31).ids(ours)
        assert llama31.decode(ours_ids) == ref_text
        # The reference tokenises the rendered text again with special tokens: a second BOS that
        # LLaMA-Factory's training rendering never had. Ours is its ids without that duplicate.
        ref_ids = llama31(ref_text)["input_ids"]
        assert ref_ids[:2] == [llama31.bos_token_id] * 2 and ref_ids[1:] == ours_ids


def test_reranker_sends_the_reference_windows_of_the_top_30(llama31, dl21, tmp_path):
    path = shared("trec-dl21", "retrieve_results_dl21_top100.json")
    rankings = list(rankllm_json(str(path), 100).values())[:2]

    class Recorder:
        identity = {"backend": "recorder"}
        prompt_limit, passage_tokens = None, None

        def __init__(self):
            self.chats = []

        def count_tokens(self, messages, chat=True):
            return len(TokenizerRenderer(llama31).ids(messages, chat))

        def generate(self, conversations, chat=True, desc="", on_done=None):
            self.chats.append(conversations)
            return [Generation("[1] > [2]") for _ in conversations]

    cfg = OmegaConf.load(CONF_DIR / "listwise" / "dear_8b_v1.yaml")
    backend = Recorder()
    ListwiseReranker(backend, dear_prompt(), cfg.window_size, cfg.step, cfg.top_k).rerank(rankings)
    assert (cfg.top_k, cfg.window_size, cfg.step) == (30, 20, 10)
    hits = {item["query"]: [h["content"] for h in item["hits"]] for item in dl21}
    first = [reference_messages(r.query.text, hits[r.query.text][10:30]) for r in rankings]
    assert backend.chats[0] == first and len(backend.chats) == 2  # windows 11-30, then 1-20


def test_auto_word_budget_fits_the_real_token_counts(llama31, dl21):
    renderer = TokenizerRenderer(llama31)
    item = dl21[0]
    # long passages: 300 words each
    texts = [" ".join([h["content"]] * 4) for h in item["hits"][:20]]
    full = renderer.count(dear_prompt().messages(item["query"], texts, 300))
    prompt = dear_prompt(max_words="auto")
    for limit in (full - 1, full // 2, full // 5):
        messages, words = fit_window(
            prompt, item["query"], texts, renderer.count, limit, renderer.passage_tokens
        )
        assert renderer.count(messages) <= limit
        largest = max(
            w
            for w in range(words, 301)
            if renderer.count(prompt.messages(item["query"], texts, w)) <= limit
        )
        # a few words short at most: extrapolated counts
        assert 0.95 * largest <= words <= largest < 300


def test_per_passage_counts_are_the_tokens_of_each_word_prefix(llama31, dl21):
    texts = [" ".join(h["content"].split()[:40]) for h in dl21[1]["hits"][:5]]
    counts = TokenizerRenderer(llama31).passage_tokens(texts)
    for text, row in zip(texts, counts):
        words = text.split()
        expect = [
            len(llama31(" " + " ".join(words[:w]), add_special_tokens=False)["input_ids"])
            for w in range(1, len(words) + 1)
        ]
        assert row == expect
