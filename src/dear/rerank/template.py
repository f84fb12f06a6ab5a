"""The DeAR pointwise input, built token-exactly as the released checkpoints were trained (docs/fidelity.md).

The released settings are ``conf/template/dear_p.yaml``, their one copy: ``PairTemplate.of`` lays a
config's ``template:`` fields over them. ``join: reference`` joins ``[bos] + q`` and ``[bos] + d``
as the reference's ``prepare_for_model`` (Qwen has no BOS: ``<|endoftext|>``); ``join: tokenizer``
uses the tokenizer's own pair template. A pair over ``max_length`` loses its overflow from one
segment's end (``overflow``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache

from tokenizers import Encoding, Tokenizer

from dear.utils.paths import ROOT

JOINS = ("reference", "tokenizer")
OVERFLOWS = ("only_second", "only_first")
QWEN_BOS = "<|endoftext|>"  # what the reference uses when a (Qwen) tokenizer has no BOS


@dataclass(frozen=True)
class PairTemplate:
    """How a (query, document) pair becomes one token sequence; ``of`` builds one from a config."""

    query_prefix: str
    doc_prefix: str
    query_max_len: int
    doc_max_len: int
    join: str
    segment_specials: bool
    max_length: int
    overflow: str
    append_eos: bool

    @classmethod
    def of(cls, settings=None) -> PairTemplate:
        """The released DeAR-P template with ``settings`` (a mapping, or a ``PairTemplate`` kept as is) over it."""
        if isinstance(settings, PairTemplate):
            return settings
        unknown = sorted(set(settings or {}) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(
                f"template: unknown field(s) {unknown}; known: {[f.name for f in fields(cls)]}"
            )
        return cls(**{**released_settings(), **(settings or {})})

    def __post_init__(self):
        if self.join not in JOINS:
            raise ValueError(f"template.join must be one of {JOINS}, got {self.join!r}")
        if self.overflow not in OVERFLOWS:
            raise ValueError(f"template.overflow must be one of {OVERFLOWS}, got {self.overflow!r}")

    def query_text(self, query: str) -> str:
        return f"{self.query_prefix}{query}"

    def doc_text(self, title: str, text: str) -> str:
        # Exactly the released format: an empty title still leaves its separating space.
        return f"{self.doc_prefix}{title} {text}"


@cache
def released_settings() -> dict:
    """``conf/template/dear_p.yaml``: the settings the released DeAR-P weights were trained with."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(DEAR_P_FILE))


DEAR_P_FILE = ROOT / "conf" / "template" / "dear_p.yaml"


def words_prefix(text: str, words: int) -> str:
    """``text`` cut after ``words`` words; a word is ≥ 1 token and no token spans a space: truncation loses nothing."""
    parts = text.split(None, words)
    return text if len(parts) <= words else text[: len(text) - len(parts[words])].rstrip()


def pair_layout(post_processor: dict | None) -> list[tuple[str, object, int]] | None:
    """The tokenizer's pair template as ``("special", ids, type)`` / ``("seq", "A"|"B", type)`` pieces, or None."""
    if post_processor is None:
        return None
    kind = post_processor.get("type")
    if kind == "Sequence":
        layouts = [
            pair_layout(p) for p in post_processor["processors"] if p.get("type") != "ByteLevel"
        ]
        return layouts[0] if len(layouts) == 1 else None
    if kind == "TemplateProcessing":
        specials = post_processor["special_tokens"]
        pieces = []
        for item in post_processor["pair"]:
            if "SpecialToken" in item:
                pieces.append(
                    (
                        "special",
                        list(specials[item["SpecialToken"]["id"]]["ids"]),
                        item["SpecialToken"]["type_id"],
                    )
                )
            else:
                pieces.append(("seq", item["Sequence"]["id"], item["Sequence"]["type_id"]))
        return pieces
    if kind == "BertProcessing":
        cls, sep = [post_processor["cls"][1]], [post_processor["sep"][1]]
        return [
            ("special", cls, 0),
            ("seq", "A", 0),
            ("special", sep, 0),
            ("seq", "B", 1),
            ("special", sep, 1),
        ]
    if kind == "RobertaProcessing":
        cls, sep = [post_processor["cls"][1]], [post_processor["sep"][1]]
        return [
            ("special", cls, 0),
            ("seq", "A", 0),
            ("special", sep + sep, 0),
            ("seq", "B", 0),
            ("special", sep, 0),
        ]
    return None


class PairEncoder:
    """Tokenises queries and documents once each (Rust backend), then joins pairs by list concatenation with the pair
    template, checked on the first pair against ``post_process``, which joins instead when they differ."""

    def __init__(self, hf_tokenizer, template: PairTemplate):
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(
                f"{type(hf_tokenizer).__name__} has no fast (Rust) backend; a fast tokenizer is required"
            )
        # private copy: no padding/truncation side effects
        self.backend = Tokenizer.from_str(backend.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        self.template = template
        self.eos_id, self.pad_id = hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id
        self.bos_id = hf_tokenizer.bos_token_id
        if self.bos_id is None and template.join == "reference":
            self.bos_id = (
                hf_tokenizer.convert_tokens_to_ids(QWEN_BOS)
                if QWEN_BOS in hf_tokenizer.get_vocab()
                else None
            )
            if self.bos_id is None:
                raise ValueError(
                    f"template.join=reference needs a BOS token and {type(hf_tokenizer).__name__} has "
                    "none (nor <|endoftext|>); use template.join=tokenizer"
                )
        if template.append_eos and self.eos_id is None:
            raise ValueError("template.append_eos is set but the tokenizer has no EOS token")
        spec = json.loads(self.backend.to_str())
        self.layout = pair_layout(spec.get("post_processor"))
        self.layout_checked = False
        # Word pre-cut needs a whitespace-splitting pre-tokenizer; without one a token could span words.
        self.can_precut = spec.get("pre_tokenizer") is not None

    def queries(self, texts: list[str]) -> list[Encoding]:
        return self._encode(
            [self.template.query_text(t) for t in texts], self.template.query_max_len
        )

    def docs(self, titled: list[tuple[str, str]]) -> list[Encoding]:
        return self._encode(
            [self.template.doc_text(t, x) for t, x in titled], self.template.doc_max_len
        )

    def pair(self, query: Encoding, doc: Encoding) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) for one joined pair."""
        if self.template.join == "reference":
            ids = self._reference_join(list(query.ids), list(doc.ids))
            types = [0] * len(ids)
        else:
            ids, types = self._tokenizer_join(query, doc)
        if self.template.append_eos:
            ids.append(self.eos_id)
            types.append(types[-1] if types else 0)
        return ids, types

    def collate(self, encoded: list[tuple[Encoding, Encoding]]) -> dict:
        """[(query, doc) encodings] → right-padded {input_ids, attention_mask, token_type_ids}, (N, L)."""
        from dear.models.batching import pad

        joined = [self.pair(q, d) for q, d in encoded]
        ids, mask = pad([j[0] for j in joined], self.pad_id)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": pad([j[1] for j in joined], 0)[0],
        }

    def _reference_join(self, query: list[int], doc: list[int]) -> list[int]:
        """``prepare_for_model([bos] + q, [bos] + d)`` with its overflow truncation."""
        first, second = [self.bos_id] + query, [self.bos_id] + doc
        specials = self._special_count() if self.template.segment_specials else 0
        excess = len(first) + len(second) + specials - self.template.max_length
        if excess > 0:
            if self.template.overflow == "only_second":
                second = second[: len(second) - excess]
            else:
                first = first[: len(first) - excess]
        if not self.template.segment_specials:
            return first + second
        if self.layout is None:
            raise ValueError(
                "template.segment_specials needs a tokenizer whose pair template can be read"
            )
        return [
            t
            for kind, value, _ in self.layout
            for t in (value if kind == "special" else (first if value == "A" else second))
        ]

    def _special_count(self) -> int:
        return sum(len(v) for kind, v, _ in self.layout or [] if kind == "special")

    def _tokenizer_join(self, query: Encoding, doc: Encoding) -> tuple[list[int], list[int]]:
        if self.layout is not None and not self.layout_checked:
            self.layout_checked = True
            if self._join(query, doc) != self._post_process(query, doc):
                self.layout = None
        return self._join(query, doc) if self.layout is not None else self._post_process(query, doc)

    def _join(self, query: Encoding, doc: Encoding) -> tuple[list[int], list[int]]:
        ids, types = [], []
        for kind, value, type_id in self.layout:
            part = value if kind == "special" else (query.ids if value == "A" else doc.ids)
            ids += part
            types += [type_id] * len(part)
        return ids, types

    def _post_process(self, query: Encoding, doc: Encoding) -> tuple[list[int], list[int]]:
        joined = self.backend.post_process(query, doc, add_special_tokens=True)
        return list(joined.ids), list(joined.type_ids)

    def _encode(self, texts: list[str], max_len: int) -> list[Encoding]:
        if self.can_precut:
            texts = [words_prefix(t, max_len + 1) for t in texts]
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        for e in encodings:
            e.truncate(max_len)
        return encodings
