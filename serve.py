"""Serve a reranker over a Cohere-compatible HTTP API (see conf/serve.yaml and README "Serving").

    python serve.py pointwise=minilm_bi_encoder serve.port=8080
    python serve.py pointwise=export pointwise.path=outputs/train/RUN_DIR
"""

from __future__ import annotations

import os

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.config import prepare_environment, register_resolvers
from dear.errors import DataError
from dear.utils import progress
from dear.utils.plain import to_plain

register_resolvers()


def api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise DataError(f"serve.api_key_env: environment variable {name!r} is unset or empty")
    return key


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    from dear.serve.app import build_app

    prepare_environment(cfg)
    progress.console.quiet = True  # a progress bar per scorer call is noise in a server log
    serve = cfg.serve
    api_key = api_key_from_env(serve.api_key_env)
    scorer = instantiate(cfg.pointwise)
    listwise = instantiate(cfg.listwise) if "listwise" in cfg else None
    name = serve.model_name or getattr(scorer, "name", type(scorer).__name__)
    app = build_app(scorer, name, to_plain(serve.limits), to_plain(serve.batching), api_key, listwise,
                    serve.listwise_depth)
    print(f"serving {name} on http://{serve.host}:{serve.port} (docs: /docs)", flush=True)
    uvicorn.run(app, host=serve.host, port=serve.port, log_level=serve.log_level,
                timeout_graceful_shutdown=serve.graceful_timeout_s)


if __name__ == "__main__":
    main()
