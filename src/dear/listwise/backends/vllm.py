"""vLLM offline generation (GPU; optional: ``pip install vllm``), imported only when built.

All prompts of a call go to the engine at once (it schedules them with paged attention);
adapters are served through a ``LoRARequest`` on the unmerged base.
"""

from __future__ import annotations

from dear.listwise.backends.base import LENGTH, STOP, Generation, LocalBackend, TokenizerRenderer
from dear.models.loading import base_and_adapter


class VLLMBackend(LocalBackend):
    def __init__(self, model: str, adapter: str | None = None, max_new_tokens: int = 1024, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, context_size: int | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1, max_lora_rank: int = 64,
                 seed: int = 0):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise ImportError("listwise backend VLLMBackend needs vLLM (pip install vllm, CUDA only); "
                              "use dear.listwise.backends.hf.TransformersBackend otherwise") from e
        path, adapter = base_and_adapter(model, adapter)
        self.name = model
        self.identity = {"backend": "vllm", "model": model, "adapter": adapter, "dtype": dtype,
                         "max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                         "seed": seed}
        self.llm = LLM(model=path, dtype=dtype, max_model_len=context_size, seed=seed,
                       gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                       enable_lora=adapter is not None, max_lora_rank=max_lora_rank)
        self.lora = LoRARequest("listwise", 1, adapter) if adapter else None
        self.renderer = TokenizerRenderer(self.llm.get_tokenizer())
        self.max_new_tokens = max_new_tokens
        self.context_size = context_size or self.llm.llm_engine.model_config.max_model_len
        self.params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                     top_k=top_k if top_k > 0 else -1,  # -1: off, in every vLLM version
                                     stop_token_ids=self.renderer.stop_ids())

    def generate(self, conversations, chat: bool = True, desc: str = "generating", on_done=None) -> list[Generation]:
        """One generation per chat, in order; ``on_done(i, generation)`` once the engine returns them."""
        prompts = [{"prompt_token_ids": self.renderer.ids(m, chat)} for m in conversations]
        outputs = self.llm.generate(prompts, self.params, use_tqdm=True, lora_request=self.lora)
        gens = [Generation(o.outputs[0].text, LENGTH if o.outputs[0].finish_reason == "length" else STOP,
                           len(o.prompt_token_ids), len(o.outputs[0].token_ids)) for o in outputs]
        for i, gen in enumerate(gens if on_done is not None else ()):
            on_done(i, gen)
        return gens
