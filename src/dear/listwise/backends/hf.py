"""transformers ``generate``: greedy or seeded sampling, left padding, KV cache, length-sorted
batches sized by a token budget."""

from __future__ import annotations

import torch

from dear.listwise.backends.base import LENGTH, STOP, Generation, LocalBackend, TokenizerRenderer
from dear.models.batching import length_batches, pad
from dear.models.loading import load_causal_lm
from dear.utils.progress import progress_bar


class TransformersBackend(LocalBackend):
    """Local generation with ``model.generate``.

    Prompts are sorted by length and batched under ``batch_size`` sequences and
    ``max_batch_tokens`` padded tokens (prompt + ``max_new_tokens`` per row), left-padded so
    every row's generation starts at the same position. ``context_size`` defaults to the
    model's ``max_position_embeddings``. ``do_sample``: sampling at ``temperature`` / ``top_p``,
    the RNG seeded with ``seed`` before every batch (a window's sample depends on its batch only,
    not on what ran before it).
    """

    def __init__(self, model: str, adapter: str | None = None, revision: str | None = None,
                 max_new_tokens: int = 1024, batch_size: int = 8, max_batch_tokens: int = 131072,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 context_size: int | None = None, dtype: str = "auto", device: str = "auto", merge: bool = True):
        from transformers import GenerationConfig

        self.name = model
        self.identity = {"backend": "transformers", "model": model, "adapter": adapter, "revision": revision,
                         "dtype": dtype, "max_new_tokens": max_new_tokens, "do_sample": do_sample,
                         **({"temperature": temperature, "top_p": top_p, "seed": seed} if do_sample else {})}
        self.seed = seed
        self.tokenizer, self.model = load_causal_lm(model, adapter, revision, dtype, device, merge)
        self.tokenizer.padding_side = "left"
        self.renderer = TokenizerRenderer(self.tokenizer)
        self.device = next(self.model.parameters()).device
        self.max_new_tokens, self.batch_size, self.max_batch_tokens = max_new_tokens, batch_size, max_batch_tokens
        self.context_size = context_size or getattr(self.model.config, "max_position_embeddings", None)
        self.stop = self.renderer.stop_ids(self.model.generation_config.eos_token_id)
        sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
        # A fresh config: the checkpoint's own sampling defaults must not leak into greedy decoding.
        self.generation_config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
                                                  eos_token_id=self.stop, pad_token_id=self.tokenizer.pad_token_id,
                                                  **sampling)

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
        width = max(len(p) for p in prompts)
        ids, mask = pad(prompts, self.tokenizer.pad_token_id, left=True)  # (B, L), real tokens flush right
        cache = self._prefill(prompts, width) if len(prompts) > 1 and min(map(len, prompts)) > 1 else None
        tokens = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     past_key_values=cache,
                                     generation_config=self.generation_config)[:, width:].tolist()  # (B, new)
        return [self._completion(row, len(p)) for row, p in zip(tokens, prompts)]

    def _prefill(self, prompts: list[list[int]], width: int):
        """The KV cache of every prompt but its last token, one row at a time, left-padded to
        ``width - 1`` positions: each row's prefill is the causal one-sequence pass (no padding
        mask: 2.7x faster attention at 4K tokens on a CPU than a masked batch), and ``generate``
        then decodes all rows together from it. Cached keys carry their rows' own positions.
        """
        from transformers import DynamicCache

        layers: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for p in prompts:
            past = self.model(input_ids=torch.tensor([p[:-1]], device=self.device), use_cache=True).past_key_values
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
