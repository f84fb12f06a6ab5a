"""transformers ``generate``: greedy or seeded sampling, left padding, KV cache, length-sorted
batches sized by a token budget, each row of a batch prefilled alone."""

from __future__ import annotations

import torch

from dear.listwise.backends.base import LENGTH, STOP, Generation, LocalBackend, TokenizerRenderer
from dear.models.batching import length_batches, pad
from dear.models.loading import load_causal_lm, native_bf16, pick_device
from dear.utils.progress import progress_bar


def generation_dtype(dtype: str, device: str = "auto") -> str:
    """The weights' dtype for generation: ``auto`` is ``bfloat16`` where the device computes it
    natively (a GPU, or a CPU with AVX512-BF16/AMX: decoding reads every weight once a token, so
    half-size weights are the speed: ``benchmarks/listwise_window.py --precision`` measures it),
    else ``float32``. The cache identity records the result, so windows generated
    in bf16 and in fp32 never share a cache entry."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16(pick_device(device)) else "float32"


class TransformersBackend(LocalBackend):
    """Local generation with a transformers causal LM's ``model.generate``.

    Prompts are sorted by length and batched under ``batch_size`` sequences and
    ``max_batch_tokens`` padded tokens (prompt + ``max_new_tokens`` per row), left-padded so
    every row's generation starts at the same position; each batch is one ``generate`` call
    (``_decode``), from rows prefilled alone (``_prefill``). ``context_size`` defaults to the
    model's ``max_position_embeddings``. ``dtype: auto`` is bf16 on a GPU and on a CPU that
    computes bf16 natively (``generation_dtype``), else fp32. ``do_sample``: sampling at ``temperature``, ``top_k``
    (50, ``generate``'s default, which the DeAR reference's sampling ran with; 0 turns it off)
    and ``top_p``, the RNG seeded with ``seed`` before every batch (a window's sample depends on
    its batch only, not on what ran before it). ``num_beams`` > 1: beam search (greedy only; the batch is
    then prefilled by ``generate``): under a permutation grammar it compares whole ids (``[9]`` against
    ``[10]``), where greedy decoding compares their first digits. ``shared``: a ``dear.models.shared.SharedBase`` to
    load the adapter onto, unmerged (one base in memory with the pointwise stage's adapter;
    ``pipeline.shared_base``).
    """

    # ``generate`` takes per-chat grammars (``dear.listwise.constrained``): ``listwise.constrained``.
    constrains = True
    # ``score_answers`` gives candidate answers their log-probabilities: ``listwise.scoring=first_id``.
    scores_answers = True

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        max_new_tokens: int = 1024,
        batch_size: int = 8,
        max_batch_tokens: int = 131072,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        seed: int = 0,
        num_beams: int = 1,
        context_size: int | None = None,
        dtype: str = "auto",
        device: str = "auto",
        merge: bool = True,
        shared=None,
    ):
        from transformers import GenerationConfig

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if num_beams < 1 or (num_beams > 1 and do_sample):
            raise ValueError(
                f"num_beams must be at least 1 (and 1 when sampling), got {num_beams} "
                f"with do_sample={do_sample}"
            )

        self.name = model
        # On a shared base the weights are the Stage-1 scorer's too: ``auto`` keeps its meaning there
        # (fp32 weights on a CPU, which the scorer computes under bf16 autocast).
        dtype = generation_dtype(dtype, device) if shared is None else dtype
        self.identity = {
            "backend": "transformers",
            "model": model,
            "adapter": adapter,
            "revision": revision,
            "dtype": dtype,
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            **(
                {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
                if do_sample
                else {}
            ),
            **({"num_beams": num_beams} if num_beams > 1 else {}),
        }
        self.seed = seed
        load = load_causal_lm if shared is None else shared.causal_lm
        self.tokenizer, self.model = load(
            model, adapter=adapter, revision=revision, dtype=dtype, device=device, merge=merge
        )
        self.tokenizer.padding_side = "left"
        self.renderer = TokenizerRenderer(self.tokenizer)
        self.device = next(self.model.parameters()).device
        self.max_new_tokens, self.batch_size, self.max_batch_tokens = (
            max_new_tokens,
            batch_size,
            max_batch_tokens,
        )
        self.context_size = context_size or getattr(
            self.model.config, "max_position_embeddings", None
        )
        self.stop = self.renderer.stop_ids(self.model.generation_config.eos_token_id)
        self._token_texts: list[str] | None = None
        sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p} if do_sample else {}
        # A fresh config: the checkpoint's own sampling defaults must not leak into greedy decoding.
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            num_beams=num_beams,
            use_cache=True,
            eos_token_id=self.stop,
            pad_token_id=self.tokenizer.pad_token_id,
            **sampling,
        )

    @torch.inference_mode()
    def generate(
        self,
        conversations,
        chat: bool = True,
        desc: str = "generating",
        on_done=None,
        constraints: list | None = None,
    ) -> list[Generation]:
        """One generation per chat, in order; ``on_done(i, generation)`` as each batch finishes. ``constraints``: per
        chat a ``PermutationGrammar`` its answer must follow (None: free), see ``dear.listwise.constrained``."""
        prompts = [self.renderer.ids(m, chat) for m in conversations]
        grammars = constraints or [None] * len(prompts)
        out: list[Generation | None] = [None] * len(prompts)
        lengths = [len(p) + self.max_new_tokens for p in prompts]
        with progress_bar(desc, len(prompts)) as advance:
            for batch in length_batches(lengths, self.batch_size, self.max_batch_tokens):
                if self.generation_config.do_sample:
                    torch.manual_seed(self.seed)
                rows = self._generate_batch(
                    [prompts[i] for i in batch], [grammars[i] for i in batch]
                )
                for i, gen in zip(batch, rows):
                    out[i] = gen
                    if on_done is not None:
                        on_done(i, gen)
                advance(len(batch))
        return out

    @torch.inference_mode()
    def score_answers(
        self,
        conversations,
        answers: list[list[str]],
        chat: bool = True,
        desc: str = "scoring",
        on_done=None,
    ) -> list[list[float]]:
        """Per chat, the log-probability of each of its ``answers`` as the reply's start (teacher-forced: the sum
        over the answer's tokens, read in float32); ``on_done(i, scores)`` as each chat is scored. The prompt and
        the answers' common token prefix are one causal pass (logits kept for the prefix only); the answers'
        other tokens one more pass over that cache (``dear.listwise.answer_scores.tail_logprobs``: one tree-masked
        row under sdpa/eager attention, else ``batch_size`` answers a pass). Answers are
        tokenized apart from the prompt, as ``dear.listwise.sft_data`` tokenizes the reply it trains on."""
        out: list[list[float]] = []
        with progress_bar(desc, len(conversations)) as advance:
            for i, (messages, options) in enumerate(zip(conversations, answers)):
                scores = self._answer_logprobs(self.renderer.ids(messages, chat), options)
                out.append(scores)
                if on_done is not None:
                    on_done(i, scores)
                advance(1)
        return out

    def _answer_logprobs(self, prompt: list[int], answers: list[str]) -> list[float]:
        from dear.listwise.answer_scores import split_answers, tail_logprobs

        encoded = [self.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
        if not encoded or not all(encoded):
            raise ValueError(f"answers to score must be non-empty strings, got {answers!r}")
        head, tails = split_answers(encoded)
        out = self.model(
            input_ids=torch.tensor([prompt + head], device=self.device),
            use_cache=True,
            logits_to_keep=len(head) + 1,
        )
        logprobs = out.logits[0].float().log_softmax(-1)  # the head's tokens, then what follows it
        common = sum(float(logprobs[j, t]) for j, t in enumerate(head))
        layers = [(layer[0], layer[1]) for layer in out.past_key_values]
        rest = tail_logprobs(
            self.model,
            layers,
            logprobs[-1],
            tails,
            self.tokenizer.pad_token_id or 0,
            self.batch_size,
        )
        return [common + float(x) for x in rest.tolist()]

    def _generate_batch(
        self, prompts: list[list[int]], grammars: list | None = None
    ) -> list[Generation]:
        rows = self._decode(prompts, grammars)
        return [self._completion(row, len(p)) for row, p in zip(rows, prompts)]

    def _decode(self, prompts: list[list[int]], grammars: list | None = None) -> list[list[int]]:
        """New token ids per prompt: ``model.generate`` with ``generation_config`` on the left-padded
        batch (``max_new_tokens`` of them, or up to the step where every row has stopped; a stopped
        row continues with padding). Rows of more than one token are prefilled alone first
        (``_prefill``), so ``generate`` runs only the last prompt token and the decode steps; a
        single prompt, or a batch holding a one-token prompt, is prefilled by ``generate`` itself
        (one pass, under the padding mask), as is every batch in beam search. ``grammars``: per
        row a grammar its tokens are masked to (``PermutationLogitsProcessor``), or None.
        """
        width = max(map(len, prompts))
        ids, mask = (
            t.to(self.device) for t in pad(prompts, self.tokenizer.pad_token_id, left=True)
        )
        cache = (
            self._prefill(prompts, width)
            if len(prompts) > 1
            and min(map(len, prompts)) > 1
            and self.generation_config.num_beams == 1
            else None
        )
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            past_key_values=cache,
            generation_config=self.generation_config,
            **self._constraint(grammars, width),
        )
        return out[:, width:].tolist()

    def _constraint(self, grammars: list | None, width: int) -> dict:
        """``generate``'s ``logits_processor`` for rows under a grammar ({} when none is)."""
        if not grammars or all(g is None for g in grammars):
            return {}
        from transformers import LogitsProcessorList

        from dear.listwise.constrained import PermutationLogitsProcessor, token_texts

        if self._token_texts is None:  # once per back end: one decode of the vocabulary
            self._token_texts = token_texts(self.tokenizer)
        processor = PermutationLogitsProcessor(grammars, self._token_texts, self.stop, width)
        return {"logits_processor": LogitsProcessorList([processor])}

    def _prefill(self, prompts: list[list[int]], width: int):
        """The KV cache of every prompt but its last token, one row at a time, left-padded to
        ``width - 1`` positions and stacked into one ``DynamicCache`` (built from per-layer
        ``(keys, values)``, as its constructor documents for gathered caches). Each row's prefill
        is the causal one-sequence pass: no padding mask, no padded positions, only the last
        position's logits. ``generate``'s own prefill of the padded batch, one masked pass, is
        slower on a CPU and in bf16 other arithmetic, so other tokens
        (``benchmarks/listwise_window.py --decode`` compares the two). Cached keys carry their
        rows' own positions, which are the ones ``generate`` derives from the left-padded mask.
        """
        from transformers import DynamicCache

        caches = [
            self.model(
                input_ids=torch.tensor([p[:-1]], device=self.device),
                use_cache=True,
                logits_to_keep=1,
            ).past_key_values
            for p in prompts
        ]

        def stacked(
            layer,
        ):  # one layer of every row: (keys, values, ...) each (1, heads, len(p) - 1, head_dim)
            return tuple(
                torch.cat(
                    [
                        torch.nn.functional.pad(row[i], (0, 0, width - len(p), 0))
                        for row, p in zip(layer, prompts)
                    ]
                )
                for i in (0, 1)
            )

        return DynamicCache([stacked(layer) for layer in zip(*caches)], config=self.model.config)

    def _completion(self, row: list[int], prompt_tokens: int) -> Generation:
        stops = [j for j, t in enumerate(row) if t in self.stop]
        end = stops[0] if stops else len(row)
        text = self.tokenizer.decode(row[:end], skip_special_tokens=True)
        finish = STOP if stops else LENGTH
        return Generation(text, finish, prompt_tokens, end + (1 if stops else 0))
