"""Serve a reranker over a Cohere-compatible HTTP API (see conf/serve.yaml and docs/serving.md).

python serve.py pointwise=minilm_bi_encoder serve.port=8080
python serve.py pointwise=export pointwise.path=outputs/train/RUN_DIR
"""

from __future__ import annotations

import os
import socket

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.cli import entry_point, run
from dear.config import prepare_environment, register_resolvers
from dear.errors import ConfigError, DataError
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


def listening_socket(host: str, port) -> socket.socket:
    """A socket bound to ``host:port`` (0: any free port), before any model loads: a bad or busy
    port fails at once, as one line naming it."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"serve.port: expected an integer port 0-65535 (0: any free one), found {port!r}"
        )
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise ConfigError(
            f"serve.host/serve.port: cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    return sock


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> None:
    import uvicorn

    from dear.serve.app import build_app

    prepare_environment(cfg)
    progress.console.quiet = True  # a progress bar per scorer call is noise in a server log
    serve = cfg.serve
    api_key = api_key_from_env(serve.api_key_env)
    sock = listening_socket(serve.host, serve.port)
    scorer = instantiate(cfg.pointwise)
    listwise = instantiate(cfg.listwise) if "listwise" in cfg else None
    app = build_app(
        scorer,
        serve.model_name,
        to_plain(serve.limits),
        to_plain(serve.batching),
        api_key,
        listwise,
        serve.listwise_depth,
    )
    host, port = sock.getsockname()[:2]
    print(f"serving {app.state.model_name} on http://{host}:{port} (docs: /docs)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level=serve.log_level, timeout_graceful_shutdown=serve.graceful_timeout_s
        )
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    run(main)
