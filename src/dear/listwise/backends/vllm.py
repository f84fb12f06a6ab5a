"""vLLM offline generation (GPU; optional: ``pip install vllm``), imported only when built.

All prompts of a call go to the engine at once; adapters are served through a ``LoRARequest`` on the unmerged base.
The listwise engine ``vllm`` (conf/engine/listwise/vllm.yaml), over the same model as the transformers engine.
"""

from __future__ import annotations

from dear.listwise.backends.base import LENGTH, STOP, Generation, LocalBackend, TokenizerRenderer
from dear.models.loading import base_and_adapter


def vllm_identity(
    model: str,
    adapter: str | None,
    revision: str | None,
    dtype: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
) -> dict:
    """The generation cache identity of a vLLM back end (``revision`` only when pinned, so older entries stay valid)."""
    return {
        "backend": "vllm",
        "model": model,
        "adapter": adapter,
        **({"revision": revision} if revision else {}),
        "dtype": dtype,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
    }


def sampling_temperature(do_sample: bool | None, temperature: float) -> float:
    """vLLM's temperature: ``do_sample: false`` greedy (0); ``true`` or ``None``: ``temperature``."""
    return 0.0 if do_sample is False else temperature


class VLLMBackend(LocalBackend):
    """Decoding settings as ``TransformersBackend``'s, but ``do_sample: None`` defers to ``temperature``;
    ``revision``: of the weights vLLM loads (the base, for an adapter)."""

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        max_new_tokens: int = 1024,
        do_sample: bool | None = None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        context_size: int | None = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        max_lora_rank: int = 64,
        seed: int = 0,
    ):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise ImportError(
                "listwise backend VLLMBackend needs vLLM (pip install vllm, CUDA only); "
                "otherwise use the transformers engine (dear.listwise.backends.hf.TransformersBackend, "
                "engine/listwise@listwise=transformers)"
            ) from e
        path, adapter = base_and_adapter(model, adapter)
        temperature = sampling_temperature(do_sample, temperature)
        self.name = model
        self.identity = vllm_identity(
            model, adapter, revision, dtype, max_new_tokens, temperature, top_k, top_p, seed
        )
        self.llm = LLM(
            model=path,
            revision=revision,
            dtype=dtype,
            max_model_len=context_size,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enable_lora=adapter is not None,
            max_lora_rank=max_lora_rank,
        )
        self.lora = LoRARequest("listwise", 1, adapter) if adapter else None
        self.renderer = TokenizerRenderer(self.llm.get_tokenizer())
        self.max_new_tokens = max_new_tokens
        self.context_size = context_size or self.llm.llm_engine.model_config.max_model_len
        self.params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k if top_k > 0 else -1,  # -1: off, in every vLLM version
            stop_token_ids=self.renderer.stop_ids(),
        )

    def generate(
        self, conversations, chat: bool = True, desc: str = "generating", on_done=None
    ) -> list[Generation]:
        """One generation per chat, in order; ``on_done(i, generation)`` once the engine returns them."""
        prompts = [{"prompt_token_ids": self.renderer.ids(m, chat)} for m in conversations]
        outputs = self.llm.generate(prompts, self.params, use_tqdm=True, lora_request=self.lora)
        gens = [
            Generation(
                o.outputs[0].text,
                LENGTH if o.outputs[0].finish_reason == "length" else STOP,
                len(o.prompt_token_ids),
                len(o.outputs[0].token_ids),
            )
            for o in outputs
        ]
        for i, gen in enumerate(gens if on_done is not None else ()):
            on_done(i, gen)
        return gens
