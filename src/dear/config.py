"""Hydra/OmegaConf glue shared by the entry points and the tests."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from dear.utils.paths import ROOT

CONF_DIR = ROOT / "conf"


def register_resolvers() -> None:
    """``${dear_root:}``: the repository root; ``${cpu_precision:}``: ``bf16-mixed`` on native-bf16 CPUs."""
    if not OmegaConf.has_resolver("dear_root"):
        OmegaConf.register_new_resolver("dear_root", lambda: str(ROOT))
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)


def cpu_precision() -> str:
    from dear.models.loading import native_bf16

    return "bf16-mixed" if native_bf16("cpu") else "32-true"


def prepare_environment(cfg) -> None:
    """Process-wide settings every entry point applies before touching data or models."""
    from dear.data.irds import use_home
    from dear.utils.quiet import quiet_known_noise

    quiet_known_noise()
    paths = cfg.paths
    use_home(paths.get("ir_datasets_home"), paths.get("ir_datasets_mirror"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Where a stage's reranker config keeps the model a shared base serves: PointwiseReranker's
# scorer, ListwiseReranker's back end.
SHARED_PARTS = ("scorer", "backend")


def hydra_choices() -> dict:
    """The config options the running Hydra job was composed from (``{"teacher": "rankllama_13b", ...}``), or {}."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return {}
    return {str(k): v for k, v in OmegaConf.to_container(HydraConfig.get().runtime.choices).items()}


def build_stages(pipeline, build=None) -> list:
    """``pipeline.stages`` → ``Stage``s built by ``build``; with ``pipeline.shared_base: true`` one ``SharedBase``
    carries every stage's adapter (handed to the reranker if it takes ``shared``, else to its scorer / backend)."""
    from hydra.utils import instantiate

    from dear.eval.pipeline import stages_from_config

    build = build or instantiate
    if not pipeline.get("shared_base", False):
        return stages_from_config(pipeline.stages, build)
    from dear.errors import ConfigError
    from dear.models.shared import SharedBase
    from dear.utils.plain import to_plain

    shared = SharedBase()

    def on_shared_base(node):
        if _accepts(node, "shared", any_keyword=False):
            return build(node, shared=shared)
        for part in SHARED_PARTS:
            child = node.get(part)
            if child is None or not hasattr(child, "keys"):
                continue
            if "_target_" not in child:  # options for the model the reranker's factory builds
                return build(node, **{part: {**to_plain(child), "shared": shared}})
            if _accepts(child, "shared"):
                return build(node, **{part: build(child, shared=shared)})
            raise ConfigError(
                f"pipeline.shared_base=true: {child['_target_']} cannot load onto a shared base "
                "(a DeAR-P scorer and a transformers listwise back end on PEFT adapters can)"
            )
        raise ConfigError(
            f"pipeline.shared_base=true: {node.get('_target_')} has no model to put on a shared base"
        )

    stages = stages_from_config(pipeline.stages, on_shared_base)
    if len(shared.attached) != len(stages):
        raise ConfigError(
            f"pipeline.shared_base=true: {len(stages)} stages but {len(shared.attached)} adapter(s) "
            f"on the shared base ({', '.join(shared.adapters) or 'none'}): every stage's model must "
            "be a PEFT adapter loaded through it"
        )
    return stages


def _accepts(node, name: str, any_keyword: bool = True) -> bool:
    """Whether the ``_target_`` of ``node`` takes a ``name`` argument (or, ``any_keyword``, ``**kwargs``)."""
    import inspect

    from hydra.utils import get_object

    target = node.get("_target_")
    if target is None:
        return False
    params = inspect.signature(get_object(target)).parameters.values()
    return any(
        p.name == name or (any_keyword and p.kind is inspect.Parameter.VAR_KEYWORD) for p in params
    )
