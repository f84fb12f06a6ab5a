"""Any OpenAI-compatible chat-completions endpoint (OpenAI, gateways, vLLM or SGLang servers), with a concurrency cap
and a request-rate limit.

The API key is read from the environment variable named by ``api_key_env`` and never appears in a config, log line or
error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from contextlib import asynccontextmanager

from dear.errors import ConfigError, EndpointError
from dear.listwise.backends.base import LENGTH, STOP, Generation, plain_text
from dear.utils.masking import mask
from dear.utils.progress import progress_bar

DEFAULT_URL = "https://api.openai.com/v1"  # the client's own default when base_url is None
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RateLimiter:
    """Spaces request starts at least ``60 / per_minute`` seconds apart (``None``: no limit)."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class OpenAIChatBackend:
    """Chat completions from ``model`` at ``base_url``: at most ``max_concurrency`` in flight, no faster than
    ``requests_per_minute``, retries by the client; tokens estimated as characters / ``chars_per_token``."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_new_tokens: int = 4096,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        timeout: float = 600.0,
        max_retries: int = 5,
        context_size: int | None = None,
        chars_per_token: float = 4.0,
        extra_body: dict | None = None,
    ):
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"endpoint.model: expected the name the server serves the model under, found {model!r} "
                "(endpoint=transformers_serve: the FORCE_MODEL the server was started with, from "
                "$DEAR_SERVE_MODEL or endpoint.model=...)"
            )
        self.name, self.model, self.base_url, self.api_key_env = model, model, base_url, api_key_env
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_concurrency, self.requests_per_minute = max_concurrency, requests_per_minute
        self.timeout, self.max_retries = timeout, max_retries
        self.context_size, self.chars_per_token = context_size, chars_per_token
        self.extra_body = dict(extra_body or {})
        # The endpoint's own seed is not set, so sampled answers are cached, not reproduced.
        self.identity = {
            "backend": "openai",
            "model": model,
            "base_url": base_url,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "extra_body": self.extra_body,
        }
        self._api_key()  # fail at start-up, not after the first batch

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "EMPTY"  # local servers without authentication
        if not _ENV_NAME.fullmatch(
            self.api_key_env
        ):  # e.g. the key itself given as endpoint.api_key_env=sk-...
            raise ConfigError(
                "endpoint.api_key_env: expected the name of an environment variable holding the key, "
                f"found a value that is not a variable name ({mask(self.api_key_env)!r} masked)"
            )
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"endpoint.api_key_env: the environment variable {self.api_key_env} is not set "
                "(API keys are read from the environment, never from configs)"
            )
        return key

    @property
    def url(self) -> str:
        """The endpoint's URL as safe to print (credentials masked)."""
        return mask(self.base_url or DEFAULT_URL)

    @property
    def prompt_limit(self) -> int | None:
        return None if self.context_size is None else self.context_size - self.max_new_tokens

    def count_tokens(self, messages, chat: bool = True) -> int:
        return int(len(plain_text(messages)) / self.chars_per_token) + 4 * len(messages)

    @asynccontextmanager
    async def session(self):
        """An async client plus the limits shared by every request made through it."""
        from openai import AsyncOpenAI

        for name in ("httpx", "httpx2"):  # one INFO line per request would drown the progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
        client = AsyncOpenAI(
            api_key=self._api_key(),
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        try:
            yield _Session(
                self,
                client,
                asyncio.Semaphore(self.max_concurrency),
                RateLimiter(self.requests_per_minute),
            )
        finally:
            await client.close()

    def generate(
        self, conversations, chat: bool = True, desc: str = "requesting", on_done=None
    ) -> list[Generation]:
        """One completion per chat, in order; ``on_done(i, generation)`` as each request completes."""

        async def run() -> list[Generation]:
            async with self.session() as session:
                with progress_bar(desc, len(conversations)) as advance:

                    async def one(i, messages):
                        gen = await session.chat(messages)
                        if on_done is not None:
                            on_done(i, gen)
                        advance()
                        return gen

                    tasks = [asyncio.ensure_future(one(i, m)) for i, m in enumerate(conversations)]
                    try:
                        return await asyncio.gather(*tasks)
                    finally:  # the first failure ends the run: the others are cancelled and collected
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)

        return asyncio.run(run())


def refusal(backend: OpenAIChatBackend, error) -> str:
    """An HTTP error → one line naming the setting to check, with the server's reason."""
    status, body = error.status_code, error.body
    detail = (
        (body.get("message") or body.get("detail") or body.get("error"))
        if isinstance(body, dict)
        else body
    )
    if detail is None or detail == "":
        detail = error.response.text or error.message
    if not isinstance(detail, str):
        detail = json.dumps(detail, default=str)
    detail = mask(" ".join(detail.split()))
    if len(detail) > 300:
        detail = detail[:300] + "..."
    why = f"(HTTP {status}: {detail})"
    if status in (401, 403):
        return f"endpoint.api_key_env: {backend.url} refused the credentials {why}"
    if status == 429 or status >= 500:
        return f"endpoint.base_url {backend.url}: the server failed after {backend.max_retries} retries {why}"
    if "context" in detail.lower():  # vLLM: "This model's maximum context length is ..."
        return (
            f"endpoint.context_size={backend.context_size}: {backend.url} refused a prompt plus "
            f"endpoint.max_new_tokens={backend.max_new_tokens} {why}"
        )
    # "requested 'x'"
    named = any(f"{q}{backend.model}{r}" in detail for q, r in ("''", '""', "``"))
    if named or "model" in detail.lower() or status == 404:
        return f"endpoint.model={backend.model!r}: {backend.url} refused the request {why}"
    return (
        f"endpoint {backend.url} rejected the request for model {backend.model!r} {why}; it carries "
        "endpoint.max_new_tokens (max_tokens), temperature, top_p and the endpoint.extra_body keys "
        f"{sorted(backend.extra_body)}"
    )


class _Session:
    def __init__(
        self, backend: OpenAIChatBackend, client, semaphore: asyncio.Semaphore, limiter: RateLimiter
    ):
        self.backend, self.client, self.semaphore, self.limiter = (
            backend,
            client,
            semaphore,
            limiter,
        )

    async def chat(self, messages, temperature: float | None = None) -> Generation:
        """One completion; reasoning a server returns apart from the content comes back inside ``<think>``."""
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        b = self.backend
        async with self.semaphore:
            await self.limiter.wait()
            try:
                response = await self.client.chat.completions.create(
                    model=b.model,
                    messages=messages,
                    max_tokens=b.max_new_tokens,
                    temperature=b.temperature if temperature is None else temperature,
                    top_p=b.top_p,
                    extra_body=b.extra_body or None,
                )
            except (
                APITimeoutError
            ) as e:  # a slow server (a CPU one, a long queue) is not an unreachable one
                raise EndpointError(
                    f"endpoint.timeout={b.timeout:g}: no answer from {b.url} within {b.timeout:g} s "
                    f"after {b.max_retries} retries (raise endpoint.timeout or lower "
                    "endpoint.max_concurrency)"
                ) from e
            except APIConnectionError as e:  # the client's own message is only "Connection error."
                cause = e.__cause__ or e
                raise EndpointError(
                    f"endpoint.base_url {b.url}: cannot connect after {b.max_retries} retries "
                    f"({mask(str(cause)) or type(cause).__name__})"
                ) from e
            except (
                APIStatusError
            ) as e:  # the client's own message is only "Error code: 400" for non-OpenAI bodies
                raise EndpointError(refusal(b, e)) from e
            except ValueError as e:  # a body that is not JSON (a proxy's HTML page, nothing at all)
                raise EndpointError(
                    f"endpoint.base_url {b.url}: the answer is not a chat completion "
                    f"(not JSON: {e})"
                ) from e
        choices = getattr(response, "choices", None)
        choice = choices[0] if isinstance(choices, list) and choices else None
        if getattr(choice, "message", None) is None:
            shown = mask(" ".join(str(response).split()))[:200]
            raise EndpointError(
                f"endpoint.base_url {b.url}: the answer is not a chat completion (no "
                f"choices[0].message in {shown})"
            )
        text = choice.message.content or ""
        reasoning = getattr(choice.message, "reasoning_content", None) or getattr(
            choice.message, "reasoning", None
        )
        if reasoning:
            text = f"<think>\n{reasoning}\n</think>\n{text}"
        usage = response.usage
        return Generation(
            text,
            LENGTH if choice.finish_reason == "length" else STOP,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )
