"""vLLM pointwise scoring for LLM sequence classifiers (GPU; optional: ``pip install vllm``).

Our token ids go in (``CrossEncoderScorer.encode``) and raw logits come out. vLLM pools the **last real token**; it
cannot reproduce the reference pooling (prompts carry no mask or position ids), so ``pooling: reference`` is refused
with a ConfigError saying to set ``pooling=last`` (conf/engine/pointwise/vllm.yaml sets it).
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from dear.data.contract import Ranking
from dear.errors import ConfigError, DataError
from dear.models.loading import base_and_adapter, load_tokenizer
from dear.rerank.pointwise import CrossEncoderScorer
from dear.rerank.template import PairEncoder, PairTemplate
from dear.utils.progress import log

REPRODUCED_POOLING = "last"


class VLLMPointwiseScorer(CrossEncoderScorer):
    """A one-logit ``*ForSequenceClassification`` (full weights) served by vLLM. ``device``:
    ``auto``/``cuda``/``cuda:0`` only (vLLM takes ``CUDA_VISIBLE_DEVICES``): one process per GPU, not DDP ranks."""

    # vLLM schedules its own batches; its memory and parallelism settings stay fingerprinted.
    runtime_only = frozenset({"device"})

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        template: PairTemplate | dict | None = None,
        pooling: str = REPRODUCED_POOLING,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        device: str = "auto",
    ):
        _check_supported(model, adapter, pooling, device)
        LLM, pooling_params = _import_vllm()
        log(
            f"vLLM pointwise engine: {model} pooled at the last real token (pooling 'last'); the released "
            "DeAR-P weights' 'reference' pooling needs the transformers engine (vLLM cannot express it)"
        )
        self.name, self.pooling = model, REPRODUCED_POOLING
        self.tokenizer = load_tokenizer(model, revision)
        self.template = PairTemplate.of(template)
        self.encoder = PairEncoder(self.tokenizer, self.template)
        self.llm = LLM(
            model=base_and_adapter(model)[0],
            revision=revision,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len or self.template.max_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            **_pooling_engine_args(),
        )
        self.params = pooling_params

    def score(self, rankings: list[Ranking], desc: str = "scoring pairs") -> list[np.ndarray]:
        """One raw classifier logit per candidate, shape (len(candidates),) per ranking."""
        from vllm.inputs import TokensPrompt

        ids, _ = self.encode(rankings)  # type ids: decoder classifiers have none
        outputs = self.llm.classify(
            [TokensPrompt(prompt_token_ids=x) for x in ids],
            pooling_params=self.params,
            use_tqdm=True,
        )
        flat = np.array([o.outputs.probs[0] for o in outputs], dtype=np.float32)
        return np.split(flat, np.cumsum([len(r.candidates) for r in rankings])[:-1])


def _check_supported(model: str, adapter: str | None, pooling: str, device: str) -> None:
    """Refuse, before vLLM is imported, what this path would compute differently."""
    if pooling not in ("auto", REPRODUCED_POOLING):
        raise ConfigError(
            f"pointwise.pooling={pooling!r}: the vLLM engine computes only pooling "
            f"'{REPRODUCED_POOLING}' (the last real token; vLLM prompts carry no attention mask or "
            f"position ids): set pointwise.pooling={REPRODUCED_POOLING}, or use the transformers engine "
            "(engine/pointwise@pointwise=transformers) for the reference pooling"
        )
    if adapter is not None or base_and_adapter(model)[1] is not None:
        raise DataError(
            f"pointwise.model={model!r}: the vLLM back end serves full checkpoints only (a LoRA "
            "adapter's score head is not loaded by vLLM); merge it first (peft merge_and_unload + "
            "save_pretrained) or use the transformers engine (CrossEncoderScorer)"
        )
    if device not in (
        "auto",
        "cuda",
        "cuda:0",
    ):  # cuda:0: a one-GPU precompute passes its root device
        raise DataError(
            f"pointwise.device={device!r}: vLLM picks its GPUs from CUDA_VISIBLE_DEVICES; "
            "leave device=auto and set that variable per process"
        )


def _import_vllm():
    """(vllm.LLM, PoolingParams returning raw logits), or an ImportError that says what to do."""
    try:
        import vllm
        from vllm import LLM, PoolingParams
    except ImportError as e:
        raise ImportError(
            "pointwise back end VLLMPointwiseScorer needs vLLM (pip install vllm, CUDA only); "
            "otherwise use the transformers engine (dear.rerank.pointwise.CrossEncoderScorer, "
            "engine/pointwise@pointwise=transformers)"
        ) from e
    accepted = inspect.signature(PoolingParams).parameters
    switch = next((name for name in ("use_activation", "activation") if name in accepted), None)
    if switch is None:  # older releases always apply a sigmoid/softmax to classifier outputs
        raise ImportError(
            f"vLLM {vllm.__version__} cannot return raw classifier logits; install vllm>=0.10.2"
        )
    return LLM, PoolingParams(**{switch: False})


def _pooling_engine_args() -> dict:
    """The pooling runner with explicit LAST pooling, in the argument names of the installed vLLM."""
    from vllm.config import PoolerConfig
    from vllm.engine.arg_utils import EngineArgs

    fields = {f.name for f in dataclasses.fields(EngineArgs)}
    args = {"runner": "pooling"} if "runner" in fields else {"task": "classify"}
    pooler_arg = "pooler_config" if "pooler_config" in fields else "override_pooler_config"
    return {**args, pooler_arg: PoolerConfig(pooling_type="LAST")}
