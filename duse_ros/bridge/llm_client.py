"""A small client for OpenAI-compatible `POST {base_url}/chat/completions` (vLLM, Ollama,
llama.cpp server, ...), on the standard library alone. Streaming is off: one JSON reply.

The API key is read once from the environment variable the config names and goes into the
Authorization header only; every error text passes through `redact` before anyone sees it.
A call never raises for endpoint trouble: it returns a ChatResult that says what went wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException

# Error kinds (ChatResult.error_kind) and the endpoint states they leave behind.
ERROR_TIMEOUT = "timeout"
ERROR_CONNECTION = "connection"
ERROR_HTTP = "http"
ERROR_MALFORMED = "malformed"

_MAX_RESPONSE_BYTES = 1 << 20
_MAX_ERROR_TEXT = 300  # characters of a server's answer quoted in an error
_MAX_ERROR_BODY = 64 * 1024  # bytes of an error body read (and redacted) before it is cut
# Credentials a server may echo whatever the key: an Authorization header's value (any), and a
# bearer token (token-like: "bearer of bad news" in a reply stays).
_CREDENTIALS = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+)?)[^\s\"',;}]+"
    r"|(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"
)
_MAX_BACKOFF_S = 30.0
_RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = ""  # ends in /v1; empty: no calls
    model: str = ""  # the served model name; empty: field left out
    api_key_env: str = "DUSE_LLM_API_KEY"  # environment variable holding the key; empty: no key
    timeout_s: float = 10.0  # per attempt, all of it: connect, headers and body
    max_retries: int = 2  # attempts = 1 + max_retries
    backoff_s: float = 0.5  # wait before retry n: backoff_s * 2**(n-1)
    max_tokens: int = 128
    temperature: float = 0.7

    def __post_init__(self) -> None:
        if self.base_url:
            parts = urllib.parse.urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # The value itself is not echoed: a malformed URL may still hold credentials.
                raise ValueError(
                    f"llm.base_url must be an http(s) URL with a host, such as "
                    f"http://127.0.0.1:8000/v1 (got scheme {parts.scheme!r}, host {parts.hostname!r})"
                )
        if self.timeout_s <= 0:
            raise ValueError(f"llm.timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"llm.max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"llm.backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_tokens < 1:
            raise ValueError(f"llm.max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"llm.temperature must be in [0, 2], got {self.temperature}")

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)


@dataclass(frozen=True)
class ChatResult:
    success: bool
    reply: str  # the assistant's text (lone surrogates replaced by U+FFFD); "" on failure
    error: str  # "" on success; redacted
    error_kind: str  # "" on success, else one of ERROR_*
    attempts: int
    latency_s: float  # wall time over all attempts and backoffs
    repaired: int = 0  # characters of the reply that could not be encoded (lone surrogates), replaced


class _AttemptError(Exception):
    def __init__(self, kind: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def public_url(url: str) -> str:
    """`url` without user:password@, fit to log and publish."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class ChatClient:
    def __init__(self, config: LLMConfig, environ: Mapping[str, str] = os.environ) -> None:
        if not config.enabled:
            raise ValueError("ChatClient needs llm.base_url")
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._api_key = environ.get(config.api_key_env, "") if config.api_key_env else ""

    def __repr__(self) -> str:
        return f"ChatClient(url={public_url(self.url)!r}, model={self.config.model!r})"

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    def redact(self, text: str) -> str:
        """Text with the API key, any Authorization value and any bearer token masked (a proxy may
        echo them in an error page, a model in its reply). Apply it before cutting text short: a
        key cut in half no longer matches. A text that ends in the key's first characters (a body
        read only in part) has that tail masked too."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
            for n in range(len(self._api_key) - 1, 3, -1):
                if text.endswith(self._api_key[:n]):
                    text = text[:-n] + "***"
                    break
        return _CREDENTIALS.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)

    def complete(
        self,
        system: str,
        user: str,
        keep_trying: Callable[[], bool] = lambda: True,
        cancel: threading.Event | None = None,
    ) -> ChatResult:
        """One chat completion with bounded retries. `keep_trying() -> False` (a newer prompt is
        waiting) or `cancel` (shutdown) stops further attempts."""
        body = json.dumps(self._request_body(system, user)).encode("utf-8")
        cancel = cancel or threading.Event()
        start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                reply, repaired = encodable(self.redact(self._attempt(body)))
                return ChatResult(True, reply, "", "", attempts, time.monotonic() - start, repaired)
            except _AttemptError as exc:
                failure = exc
            message = str(failure)  # excerpts in it were redacted before they were cut
            if not failure.retryable or attempts > self.config.max_retries:
                return self._failure(failure.kind, message, attempts, start)
            backoff = min(self.config.backoff_s * 2 ** (attempts - 1), _MAX_BACKOFF_S)
            if not keep_trying() or cancel.wait(backoff) or not keep_trying():
                return self._failure(
                    failure.kind, f"{message} (no retry: a newer prompt is waiting or the node stops)", attempts, start
                )

    @staticmethod
    def _failure(kind: str, error: str, attempts: int, start: float) -> ChatResult:
        return ChatResult(False, "", error, kind, attempts, time.monotonic() - start)

    def _request_body(self, system: str, user: str) -> dict:
        body = {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "stream": False,
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        if self.config.model:
            body["model"] = self.config.model
        return body

    def _attempt(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        timeout = self.config.timeout_s
        # The socket timeout bounds the connect and each read; the deadline bounds the whole attempt:
        # a server that drips its headers or body a byte at a time has its socket shut at the deadline.
        deadline = _Deadline(timeout)
        timed_out = _AttemptError(ERROR_TIMEOUT, f"no answer within {timeout:g} s", True)
        try:
            with _opener(deadline).open(request, timeout=timeout) as response:
                raw = _read_limited(response, deadline)
        except urllib.error.HTTPError as exc:
            if deadline.expired:
                raise timed_out from None
            detail = _excerpt(self.redact(_decode(_read_error_body(exc))))
            raise _AttemptError(
                ERROR_HTTP, f"HTTP {exc.code} {exc.reason}: {detail}".rstrip(": "), exc.code in _RETRYABLE_HTTP
            ) from None
        except urllib.error.URLError as exc:
            if deadline.expired or isinstance(exc.reason, TimeoutError):
                raise timed_out from None
            raise _AttemptError(ERROR_CONNECTION, f"cannot reach endpoint: {exc.reason}", True) from None
        except TimeoutError:
            raise timed_out from None
        except (HTTPException, OSError) as exc:
            if deadline.expired:
                raise timed_out from None
            raise _AttemptError(ERROR_CONNECTION, f"connection failed: {self.redact(repr(exc))}", True) from None
        except _AttemptError:
            if deadline.expired:
                raise timed_out from None
            raise
        finally:
            deadline.cancel()
        return _parse_reply(raw, self.redact)


class _Deadline:
    """The end of one attempt: at `seconds` from now every socket it watches is shut down, which
    ends a read blocked on a server that sends a byte now and then (each within the socket timeout)."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        _shut(sock)

    def passed(self) -> bool:
        return self.expired or time.monotonic() > self.at

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment included) whose connections report their
    socket to `deadline` once connected."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class TLSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class TLSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(TLSConnection, req, context=self._context)

    return urllib.request.build_opener(Handler, TLSHandler)


def _read_limited(response, deadline: _Deadline) -> bytes:
    chunks, size = [], 0
    # read1: one socket read at a time, so a server that trickles bytes still meets the deadline.
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            raise _AttemptError(ERROR_MALFORMED, f"response larger than {_MAX_RESPONSE_BYTES} bytes", False)
        if deadline.passed():
            raise TimeoutError
        chunks.append(chunk)
    if deadline.expired:  # the read ended because the deadline shut the socket
        raise TimeoutError
    missing = getattr(response, "length", None)  # bytes of Content-Length not received
    if missing:
        raise _AttemptError(
            ERROR_CONNECTION,
            f"the connection closed {missing} bytes short of the announced Content-Length ({size} received)",
            True,
        )
    return b"".join(chunks)


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(_MAX_ERROR_BODY) if exc.fp else b""
    except (HTTPException, OSError):  # the body is only detail for the message; the status says enough
        return b""


def _parse_reply(raw: bytes, redact: Callable[[str], str]) -> str:
    try:
        data = json.loads(raw)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _AttemptError(
            ERROR_MALFORMED,
            f"not a chat-completions reply ({type(exc).__name__}): {_excerpt(redact(_decode(raw)))}",
            False,
        ) from None
    if not isinstance(content, str) or not content.strip():
        raise _AttemptError(ERROR_MALFORMED, f"reply has no text content: {_excerpt(redact(_decode(raw)))}", False)
    return content.strip()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def encodable(text: str) -> tuple[str, int]:
    """`text` as it can go into a ROS string (UTF-8), and how many characters were replaced. JSON
    may carry a lone surrogate (\\ud800, half of a pair), which no UTF-8 encoder accepts; json
    joins valid pairs into one character, so every surrogate left is a lone one: U+FFFD for it."""
    lone = sum(1 for ch in text if "\ud800" <= ch <= "\udfff")
    if not lone:
        return text, 0
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text), lone


def log_excerpt(text: str, limit: int = 200) -> str:
    """A text from outside (an LLM's reply, a server's answer) fit for one log line: control and
    other non-printable characters escaped as Python writes them (an ANSI escape or a newline can
    neither colour nor forge a line), cut after `limit` characters with the full length said."""
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return escaped if len(text) <= limit else f"{escaped}... [{len(text)} characters]"


def _excerpt(text: str) -> str:
    """A short, printable excerpt of a server's (already redacted) answer for an error message."""
    text = text[:_MAX_ERROR_TEXT]
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


# Endpoint states for diagnostics.
ENDPOINT_DISABLED = "disabled"  # no llm.base_url: prompts only
ENDPOINT_UNKNOWN = "unknown"  # no request finished yet
ENDPOINT_OK = "ok"
_ENDPOINT_STATE_BY_ERROR = {
    ERROR_TIMEOUT: "slow (timeout)",
    ERROR_CONNECTION: "unreachable",
    ERROR_HTTP: "http error",
    ERROR_MALFORMED: "malformed replies",
}
ENDPOINT_UNPUBLISHED = "replies not published"  # a reply arrived but its messages could not be sent


class EndpointStats:
    """Counters over finished requests, updated from the worker thread, read from the executor."""

    def __init__(self, enabled: bool) -> None:
        self._lock = threading.Lock()
        self.ok = self.failed = self.timeouts = self.superseded = self.repaired = self.unpublished = 0
        self.last_error = ""
        self.last_latency_s = 0.0
        self.state = ENDPOINT_UNKNOWN if enabled else ENDPOINT_DISABLED

    def record(self, result: ChatResult) -> None:
        with self._lock:
            self.last_latency_s = result.latency_s
            if result.success:
                self.ok += 1
                self.repaired += result.repaired > 0
                self.state = ENDPOINT_OK
                return
            self.failed += 1
            self.timeouts += result.error_kind == ERROR_TIMEOUT
            self.last_error = result.error
            self.state = _ENDPOINT_STATE_BY_ERROR[result.error_kind]

    def record_unpublished(self, error: str) -> None:
        """A finished request whose exchange or reply could not be published (counted, not lost silently)."""
        with self._lock:
            self.unpublished += 1
            self.last_error = error
            self.state = ENDPOINT_UNPUBLISHED

    def record_superseded(self) -> None:
        with self._lock:
            self.superseded += 1

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return {
                "llm_endpoint_state": self.state,
                "llm_requests_ok": str(self.ok),
                "llm_requests_failed": str(self.failed),
                "llm_timeouts": str(self.timeouts),
                "llm_superseded": str(self.superseded),
                "llm_replies_repaired": str(self.repaired),
                "llm_replies_unpublished": str(self.unpublished),
                "llm_last_error": self.last_error,
                "llm_last_latency_s": f"{self.last_latency_s:.3f}",
            }

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self.state in (ENDPOINT_DISABLED, ENDPOINT_UNKNOWN, ENDPOINT_OK)
