"""HTTP transport of the `openai` backend: concurrency, queue-aware timeouts, retries by
cause, and a thread-hosted event loop that hands each result back as it completes.

Retry policy (tenacity, exponential backoff with jitter, a 429/503 ``Retry-After`` header
honoured up to 60 s):

- connection errors, timeouts, 429, 502, 503, 504: retried up to ``max_retries`` times;
- 500: the server failed on this request (e.g. its tool parser on a badly written call);
  a greedy request fails the same way again, so it is retried once;
- any other 4xx: never retried.

A request that still fails becomes :class:`RequestFailed` (the engine returns
``Failed(reason)`` for that item and the rest go on). Failures every request would share
raise :class:`~looptool.engines.base.EngineError` instead: the server unreachable, or
HTTP 401/403/404/405 (wrong URL or key).

Timeouts are queue-aware: a request times out when ``timeout_s`` pass after it was sent
(the concurrency slot taken) AND after the server last finished any request of this run.
A server that works one request at a time (transformers serve) queues the others, and
their wait is not held against them while it makes progress. A timed-out request's
connection is closed, which makes vLLM and SGLang abort it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from looptool.engines.base import EngineError, Failed

RETRY_STATUS = {429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404, 405}  # every request would fail the same way
MAX_RETRY_AFTER_S = 60.0


class RequestFailed(Exception):
    """This request alone could not be answered; the engine returns ``Failed(str(exc))``."""


class EndpointRejected(EngineError):
    """HTTP 401/403/404/405: the URL or key is wrong for every request (``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _Retryable(Exception):
    """A response worth retrying (429/5xx); carries the server's Retry-After, if any."""

    def __init__(self, status: int, body: str, retry_after: float | None):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.retry_after = retry_after


class _TimedOut(Exception):
    """No reply within the queue-aware timeout."""


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(raw))) if raw is not None else None
    except ValueError:
        return None


@cache
def _ssl_context() -> ssl.SSLContext:
    # built once per process: loading the CA bundle per client costs ~0.1-1 s
    return httpx.create_ssl_context()


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | _TimedOut | httpx.TransportError)


@dataclass
class Session:
    """One run's client, concurrency slots and progress clock (loop time of the last reply)."""

    client: httpx.AsyncClient
    sem: asyncio.Semaphore
    last_reply: float = 0.0


Job = Callable[[Session], Awaitable[Any]]


class Transport:
    """Posts JSON to one endpoint with the policy above; runs jobs concurrently."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        concurrency: int,
        timeout_s: float,
        max_retries: int,
        retry_wait_s: float,
        rejected_hint: Callable[[str], str | None] = lambda body: None,
    ):
        self.base_url = base_url
        self.headers = headers
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_wait_s = retry_wait_s
        # maps a 4xx body to an actionable message when it names a field we chose to send
        self.rejected_hint = rejected_hint

    # ---------------------------------------------------------------- one request
    async def _send(self, s: Session, url: str, body: dict) -> httpx.Response:
        async with s.sem:
            loop = asyncio.get_running_loop()
            sent = loop.time()
            task = asyncio.ensure_future(s.client.post(url, json=body))
            try:
                while not task.done():
                    left = max(sent, s.last_reply) + self.timeout_s - loop.time()
                    if left <= 0:
                        raise _TimedOut()
                    await asyncio.wait({task}, timeout=left)
            finally:
                if not task.done():
                    task.cancel()  # closes the connection: vLLM / SGLang abort the request
            resp = task.result()
            s.last_reply = loop.time()
            return resp

    async def post(self, s: Session, url: str, body: dict) -> dict:
        """POST ``body``; the decoded JSON reply, or RequestFailed / EngineError."""

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.status == 500:
                return state.attempt_number >= 2
            return state.attempt_number > self.max_retries

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            w = self.retry_wait_s
            return wait_exponential_jitter(multiplier=w, jitter=w, max=30.0)(state)

        tries = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop, wait=wait, retry=retry_if_exception(_is_retryable), reraise=True
            ):
                with attempt:
                    tries += 1
                    resp = await self._send(s, url, body)
                    if resp.status_code in RETRY_STATUS:
                        raise _Retryable(resp.status_code, resp.text, _retry_after(resp))
                    if resp.status_code >= 400:
                        self._rejected(url, resp)
                    try:
                        return resp.json()
                    except json.JSONDecodeError:
                        raise RequestFailed(
                            f"{url}: reply is not JSON: {resp.text[:200]}"
                        ) from None
        except _Retryable as exc:
            raise RequestFailed(f"{url}: {exc} (after {tries} attempt(s))") from None
        except _TimedOut:
            raise RequestFailed(
                f"{url}: no reply within timeout_s={self.timeout_s:g} of sending while the "
                f"server finished nothing else (after {tries} attempt(s)); raise "
                "engines.<role>.timeout_s?"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise EngineError(
                f"openai endpoint {self.base_url} is unreachable ({type(exc).__name__}: {exc}); "
                "is the server running and is engines.<role>.base_url right?"
            ) from None
        except httpx.TransportError as exc:
            raise RequestFailed(
                f"{url}: connection failed ({type(exc).__name__}: {exc}) after {tries} attempt(s)"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises

    def _rejected(self, url: str, resp: httpx.Response) -> None:
        body = resp.text[:500]
        hint = self.rejected_hint(body)
        if hint:
            raise EngineError(f"openai endpoint {url}: HTTP {resp.status_code}: {body}; {hint}")
        if resp.status_code in FATAL_STATUS:
            raise EndpointRejected(
                f"openai endpoint {url}: HTTP {resp.status_code}: {body}", resp.status_code
            )
        raise RequestFailed(f"{url}: HTTP {resp.status_code}: {body}")

    # ---------------------------------------------------------------- many requests
    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Any]]:
        """Run ``jobs`` concurrently on an event loop in a helper thread; yield
        ``(index, result)`` as each finishes (a RequestFailed becomes ``Failed``). An
        EngineError stops the run and is raised here; closing the iterator early cancels
        the requests still running."""
        if not jobs:
            return
        out: queue.SimpleQueue = queue.SimpleQueue()
        state: dict[str, Any] = {"cancelled": False}
        lock = threading.Lock()

        async def main() -> None:
            with lock:
                if state["cancelled"]:
                    return
                state["loop"] = asyncio.get_running_loop()
                state["main"] = asyncio.current_task()
            timeout = httpx.Timeout(self.timeout_s, read=None, pool=None)
            limits = httpx.Limits(max_connections=self.concurrency)
            async with httpx.AsyncClient(
                headers=self.headers,
                timeout=timeout,
                limits=limits,
                trust_env=False,
                verify=_ssl_context(),
            ) as client:
                s = Session(client, asyncio.Semaphore(self.concurrency))

                async def one(i: int, job: Job) -> None:
                    try:
                        res = await job(s)
                    except RequestFailed as exc:
                        res = Failed(str(exc))
                    out.put(("ok", i, res))

                tasks = [asyncio.ensure_future(one(i, j)) for i, j in enumerate(jobs)]
                try:
                    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]

        def target() -> None:
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # re-raised in the consumer's thread
                out.put(("error", exc))
            out.put(("end",))

        th = threading.Thread(target=target, name="openai-engine", daemon=True)
        th.start()
        ended = False
        try:
            while True:
                msg = out.get()
                if msg[0] == "end":
                    ended = True
                    return
                if msg[0] == "error":
                    raise msg[1]
                yield msg[1], msg[2]
        finally:
            with lock:
                state["cancelled"] = True
                loop, main_task = state.get("loop"), state.get("main")
            if not ended and loop is not None and main_task is not None:
                try:
                    loop.call_soon_threadsafe(main_task.cancel)
                except RuntimeError:
                    pass  # the loop closed meanwhile: nothing left to cancel
            th.join()

    def call(self, job: Job) -> Any:
        """Run one job to completion (capability probes)."""
        for _, res in self.run([job]):
            return res
        raise AssertionError("unreachable")  # pragma: no cover
