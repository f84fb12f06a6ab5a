"""transformers models: greedy or seeded sampling, left padding, KV cache, length-sorted batches
sized by a token budget, decoded by a short loop that makes exactly ``generate``'s choices."""

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
    """Local generation with a transformers causal LM, making ``model.generate``'s choices (see ``_decode``).

    Prompts are sorted by length and batched under ``batch_size`` sequences and
    ``max_batch_tokens`` padded tokens (prompt + ``max_new_tokens`` per row), left-padded so
    every row's generation starts at the same position. ``context_size`` defaults to the
    model's ``max_position_embeddings``. ``dtype: auto`` is bf16 on a GPU and on a CPU that
    computes bf16 natively (``generation_dtype``), else fp32. ``do_sample``: sampling at ``temperature``, ``top_k``
    (50, ``generate``'s default, which the DeAR reference's sampling ran with; 0 turns it off)
    and ``top_p``, the RNG seeded with ``seed`` before every batch (a window's sample depends on
    its batch only, not on what ran before it). ``shared``: a ``dear.models.shared.SharedBase`` to
    load the adapter onto, unmerged (one base in memory with the pointwise stage's adapter;
    ``pipeline.shared_base``).
    """

    def __init__(self, model: str, adapter: str | None = None, revision: str | None = None,
                 max_new_tokens: int = 1024, batch_size: int = 8, max_batch_tokens: int = 131072,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0,
                 seed: int = 0, context_size: int | None = None, dtype: str = "auto", device: str = "auto",
                 merge: bool = True, shared=None):
        from transformers import GenerationConfig
        from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")

        self.name = model
        # On a shared base the weights are the Stage-1 scorer's too: ``auto`` keeps its meaning there
        # (fp32 weights on a CPU, which the scorer computes under bf16 autocast).
        dtype = generation_dtype(dtype, device) if shared is None else dtype
        self.identity = {"backend": "transformers", "model": model, "adapter": adapter, "revision": revision,
                         "dtype": dtype, "max_new_tokens": max_new_tokens, "do_sample": do_sample,
                         **({"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
                            if do_sample else {})}
        self.seed = seed
        load = load_causal_lm if shared is None else shared.causal_lm
        self.tokenizer, self.model = load(model, adapter, revision, dtype, device, merge)
        self.tokenizer.padding_side = "left"
        self.renderer = TokenizerRenderer(self.tokenizer)
        self.device = next(self.model.parameters()).device
        self.max_new_tokens, self.batch_size, self.max_batch_tokens = max_new_tokens, batch_size, max_batch_tokens
        self.context_size = context_size or getattr(self.model.config, "max_position_embeddings", None)
        self.stop = self.renderer.stop_ids(self.model.generation_config.eos_token_id)
        sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p} if do_sample else {}
        # A fresh config: the checkpoint's own sampling defaults must not leak into greedy decoding.
        self.generation_config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                                                  eos_token_id=self.stop, pad_token_id=self.tokenizer.pad_token_id,
                                                  **sampling)
        # generate's sampling warpers for these settings, in its order (min_tokens_to_keep 1 without beams).
        self.warpers = []
        if do_sample and temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if do_sample and top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if do_sample and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    @torch.inference_mode()
    def generate(self, conversations, chat: bool = True, desc: str = "generating", on_done=None) -> list[Generation]:
        """One generation per chat, in order; ``on_done(i, generation)`` as each batch finishes."""
        prompts = [self.renderer.ids(m, chat) for m in conversations]
        out: list[Generation | None] = [None] * len(prompts)
        lengths = [len(p) + self.max_new_tokens for p in prompts]
        with progress_bar(desc, len(prompts)) as advance:
            for batch in length_batches(lengths, self.batch_size, self.max_batch_tokens):
                if self.generation_config.do_sample:
                    torch.manual_seed(self.seed)
                for i, gen in zip(batch, self._generate_batch([prompts[i] for i in batch])):
                    out[i] = gen
                    if on_done is not None:
                        on_done(i, gen)
                advance(len(batch))
        return out

    def _generate_batch(self, prompts: list[list[int]]) -> list[Generation]:
        return [self._completion(row, len(p)) for row, p in zip(self._decode(prompts), prompts)]

    def _decode(self, prompts: list[list[int]]) -> list[list[int]]:
        """New token ids per prompt (``max_new_tokens`` of them, or up to the step where every row
        has stopped; a stopped row continues with padding), chosen as ``model.generate`` with
        ``generation_config`` chooses them: greedy argmax, or temperature / top-k / top-p warpers
        then ``torch.multinomial`` on the float32 scores, consuming the RNG alike (tests compare
        the two token for token).

        Why not ``generate`` itself: per step it runs its logits-processor, stopping-criteria and
        input-preparation machinery; at batch size 1, with nothing to amortise that over, the
        model card's one-``generate``-per-query loop was faster than a batched ``generate``
        (``benchmarks/listwise_window.py --batch-size 1`` measures both; docs/speed.md). Prompts of
        unequal length are left-padded; each is prefilled alone (``_prefill``) unless one is a
        single token, when the padded batch is prefilled under its mask.
        """
        rows, lengths = len(prompts), [len(p) for p in prompts]
        device, pad_id = self.device, self.tokenizer.pad_token_id  # never None: load_tokenizer sets one
        stop = torch.tensor(self.stop, device=device)
        if len(set(lengths)) == 1:  # nothing padded: the causal pass, no mask, positions from the cache
            mask = positions = None
            ids = torch.tensor(prompts, device=device)
            first = dict(input_ids=ids[:, -1:], past_key_values=self._prefill(prompts, lengths[0])) \
                if rows > 1 and lengths[0] > 1 else dict(input_ids=ids)
        else:
            ids, mask = (t.to(device) for t in pad(prompts, self.tokenizer.pad_token_id, left=True))
            positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # generate's position ids
            if min(lengths) > 1:
                first = dict(input_ids=ids[:, -1:], position_ids=positions[:, -1:],
                             past_key_values=self._prefill(prompts, max(lengths)))
            else:
                first = dict(input_ids=ids, position_ids=positions)
            positions = positions[:, -1:]
        out = self.model(**first, attention_mask=mask, use_cache=True, logits_to_keep=1)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        steps = []
        for step in range(self.max_new_tokens):
            token = self._choose(out.logits[:, -1].to(copy=True, dtype=torch.float32))
            token = torch.where(done, torch.full_like(token, pad_id), token)
            steps.append(token)
            done |= torch.isin(token, stop)
            if step + 1 == self.max_new_tokens or bool(done.all()):
                break
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(rows, 1)], 1)
                positions = positions + 1
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=out.past_key_values, use_cache=True)
        return torch.stack(steps, 1).tolist()

    def _choose(self, scores: torch.Tensor) -> torch.Tensor:
        """The next token of every row from its float32 scores (B, vocab)."""
        if not self.generation_config.do_sample:
            return scores.argmax(-1)
        for warp in self.warpers:
            scores = warp(None, scores)
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    def _prefill(self, prompts: list[list[int]], width: int):
        """The KV cache of every prompt but its last token, one row at a time, left-padded to
        ``width - 1`` positions: each row's prefill is the causal one-sequence pass (no padding
        mask: faster attention on a CPU than a masked batch), and ``_decode``
        then decodes all rows together from it. Cached keys carry their rows' own positions.
        """
        from transformers import DynamicCache

        layers: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for p in prompts:
            past = self.model(input_ids=torch.tensor([p[:-1]], device=self.device), use_cache=True,
                              logits_to_keep=1).past_key_values  # the cache only: no (len, vocab) logits
            pad = width - len(p)
            layers.append([(torch.nn.functional.pad(layer.keys, (0, 0, pad, 0)),
                            torch.nn.functional.pad(layer.values, (0, 0, pad, 0))) for layer in past.layers])
        stacked = [(torch.cat([row[i][0] for row in layers]), torch.cat([row[i][1] for row in layers]))
                   for i in range(len(layers[0]))]  # per layer (B, heads, width - 1, head_dim)
        return DynamicCache(stacked, config=self.model.config)

    def _completion(self, row: list[int], prompt_tokens: int) -> Generation:
        stops = [j for j, t in enumerate(row) if t in self.stop]
        end = stops[0] if stops else len(row)
        text = self.tokenizer.decode(row[:end], skip_special_tokens=True)
        finish = STOP if stops else LENGTH
        return Generation(text, finish, prompt_tokens, end + (1 if stops else 0))
