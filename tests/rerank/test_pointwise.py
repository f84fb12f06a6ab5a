"""The DeAR pair template, explicit pooling and length-sorted batching of the scoring engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dear.data.contract import Candidate, Query, Ranking
from dear.models.batching import length_batches
from dear.rerank.pointwise import CrossEncoderScorer, PointwiseReranker
from dear.rerank.template import PairTemplate

LONG_QUERY = "what is the " + "very " * 60 + "long question about llamas"
LONG_DOC = "the llama is a domesticated south american camelid " * 40


def test_template_ids_match_independent_construction(tiny_llama_cls):
    from transformers import AutoTokenizer

    scorer = CrossEncoderScorer(tiny_llama_cls)
    ids, _ = scorer.encode([Ranking(Query("q", LONG_QUERY), [Candidate("d", LONG_DOC, "Llama")])])

    tok = AutoTokenizer.from_pretrained(tiny_llama_cls)
    q = tok.encode(f"query: {LONG_QUERY}", add_special_tokens=False)
    d = tok.encode(f"document: Llama {LONG_DOC}", add_special_tokens=False)
    assert len(q) > 32 and len(d) > 196  # both really get cut
    assert ids[0] == [tok.bos_token_id] + q[:32] + [tok.bos_token_id] + d[:193]


def test_empty_title_keeps_released_spacing(tiny_llama_cls):
    from transformers import AutoTokenizer

    scorer = CrossEncoderScorer(tiny_llama_cls, template={"append_eos": True})
    ids, _ = scorer.encode([Ranking(Query("q", "x"), [Candidate("d", "coffee")])])
    tok = AutoTokenizer.from_pretrained(tiny_llama_cls)
    expected_doc = tok.encode("document:  coffee", add_special_tokens=False)
    assert ids[0][-len(expected_doc) - 1 : -1] == expected_doc and ids[0][-1] == tok.eos_token_id


def test_pooled_score_equals_hf_forward_on_unpadded_input(tiny_llama_cls):
    """Our explicit last-token pooling on a right-padded batch == HF's own head on one sequence."""
    scorer = CrossEncoderScorer(tiny_llama_cls, max_batch_pairs=8, pooling="last")
    ranking = Ranking(
        Query("q", "what is a llama"),
        [
            Candidate("long", LONG_DOC),
            Candidate("short", "a camelid"),
            Candidate("mid", LONG_DOC[:120]),
        ],
    )
    batched = scorer.score([ranking])[0]
    ids, _ = scorer.encode([ranking])
    with torch.inference_mode():
        single = [scorer.model(input_ids=torch.tensor([x])).logits.item() for x in ids]
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_scores_do_not_depend_on_batch_composition(tiny_bert_cls):
    rankings = [
        Ranking(
            Query(str(i), f"query {i} llama"),
            [Candidate(f"d{j}", LONG_DOC[: 40 * (j + 1)]) for j in range(5)],
        )
        for i in range(3)
    ]
    big = CrossEncoderScorer(tiny_bert_cls, max_batch_pairs=64).score(rankings)
    small = CrossEncoderScorer(tiny_bert_cls, max_batch_pairs=2, max_batch_tokens=300).score(
        rankings
    )
    for a, b in zip(big, small):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("max_items,max_tokens", [(4, 10_000), (100, 50), (3, 30)])
def test_length_batches_cover_everything_within_limits(max_items, max_tokens):
    lengths = [5, 17, 3, 9, 9, 12, 1, 8, 20, 2]
    batches = length_batches(lengths, max_items, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= max_items
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens


def test_reranker_sorts_by_score_and_keeps_ties_in_order():
    class Fixed:
        def score(self, rankings):
            return [np.array([0.1, 0.9, 0.1, 0.5])]

    ranking = Ranking(Query("q", "t"), [Candidate(x) for x in "abcd"])
    out = PointwiseReranker(Fixed()).rerank([ranking])[0]
    assert [c.docid for c in out.candidates] == ["b", "d", "a", "c"]
    assert out.candidates[0].score == pytest.approx(0.9)


def test_template_defaults_are_the_released_ones():
    t = PairTemplate.of()
    assert (t.query_prefix, t.doc_prefix, t.query_max_len, t.doc_max_len) == (
        "query: ",
        "document: ",
        32,
        193,
    )
    assert (t.join, t.max_length, t.overflow) == ("reference", 228, "only_second")


WORDS = [
    "llama",
    "camelid",
    "Andes",
    "wool",
    "2,048",
    "e.g.",
    "self-report",
    "naïve",
    "数据",
    "'s",
    "—",
    "(p<0.05)",
]
SPACES = [" ", "  ", "\n", "\n\n", "\t", " \n "]


@pytest.mark.parametrize("fixture", ["tiny_llama_cls", "tiny_bert_cls"])
def test_word_precut_and_template_join_equal_the_tokenizers_own_pair_encoding(fixture, request):
    """The fast path (documents cut to a word prefix before tokenising, pairs joined by the
    template read from the tokenizer) gives exactly the ids and type ids of tokenising the
    whole texts and joining them with the tokenizer's own post-processor."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    scorer = CrossEncoderScorer(
        request.getfixturevalue(fixture), template={"join": "tokenizer", "doc_max_len": 196}
    )
    assert scorer.encoder.layout is not None and scorer.encoder.can_precut  # the fast path is taken
    rng = np.random.default_rng(0)
    docs = [
        " ".join("".join([rng.choice(WORDS), rng.choice(SPACES)]) for _ in range(n))
        for n in (3, 150, 190, 400, 900)
    ]
    docs.append(" ".join(["x"] * 197) + "\n\n" + "tail " * 50)  # a whitespace run right at the cut
    ranking = Ranking(
        Query("q", "how do llamas   live?\n"),
        [Candidate(f"d{i}", d, "T") for i, d in enumerate(docs)],
    )
    got_ids, got_types = scorer.encode([ranking])

    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    q = backend.encode("query: how do llamas   live?\n", add_special_tokens=False)
    q.truncate(32)
    for doc, ids, types in zip(docs, got_ids, got_types):
        d = backend.encode(f"document: T {doc}", add_special_tokens=False)
        d.truncate(196)
        full = backend.post_process(q, d, add_special_tokens=True)
        assert (ids, types) == (full.ids, full.type_ids)


def test_unknown_pair_template_falls_back_to_the_tokenizers_post_processor():
    from dear.rerank.template import pair_layout, words_prefix

    assert pair_layout(None) is None and pair_layout({"type": "SomethingNew"}) is None
    assert (
        words_prefix("a  b\nc d", 2) == "a  b"
        and words_prefix("a b", 5) == "a b"
        and words_prefix("", 3) == ""
    )


def test_bi_encoder_scores_are_scaled_cosines_and_the_scale_reaches_the_teacher_fingerprint(
    tiny_bert_cls,
):
    from omegaconf import OmegaConf

    from dear.config import CONF_DIR
    from dear.distill.teacher_cache import fingerprint
    from dear.rerank.pointwise import BiEncoderScorer

    rankings = [
        Ranking(
            Query("q", "llamas of the andes"),
            [Candidate("a", "the llama"), Candidate("b", LONG_DOC)],
        )
    ]
    cosine = np.concatenate(BiEncoderScorer(tiny_bert_cls).score(rankings))
    scaled = np.concatenate(BiEncoderScorer(tiny_bert_cls, logit_scale=20.0).score(rankings))
    assert np.all(np.abs(cosine) <= 1 + 1e-6) and np.allclose(scaled, 20 * cosine, atol=1e-5)
    teacher = OmegaConf.to_container(
        OmegaConf.load(CONF_DIR / "teacher" / "minilm_bi_encoder.yaml")
    )
    assert teacher["logit_scale"] == 20.0  # the default teacher's logits are 20 x cosine
    # a new scale, a new cache
    assert fingerprint({**teacher, "logit_scale": 1.0}, {}) != fingerprint(teacher, {})
