"""The chat-completions client against a real HTTP server on 127.0.0.1 (streaming off).

FakeChatServer is also used by test_llm_bridge_node.py.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from duse_ros.bridge.llm_client import (
    ENDPOINT_DISABLED,
    ENDPOINT_OK,
    ENDPOINT_UNKNOWN,
    ERROR_CONNECTION,
    ERROR_HTTP,
    ERROR_MALFORMED,
    ERROR_TIMEOUT,
    ChatClient,
    EndpointStats,
    LLMConfig,
    encodable,
    log_excerpt,
    public_url,
)

API_KEY = "sk-test-0123456789-do-not-leak"
KEY_ENV = "DUSE_TEST_LLM_KEY"
WAIT_S = 10.0
LONE_SURROGATE_REPLY = "I hear you \ud83d. Tell me more \U0001f600"  # a lone high surrogate, then a real emoji
REPLIES = {
    "surrogate": LONE_SURROGATE_REPLY,
    "ansi": "fine\x1b[31m\n[ERROR] [llm_bridge_node]: forged line\x1b[0m",
    "big_reply": "blah " * 180_000,
}


class FakeChatServer:
    """A chat-completions endpoint on 127.0.0.1:<free port>, answering from a thread.

    `mode` picks the answer: ok, hang (until `release` is set), http500 (echoes the request's
    Authorization header, as a careless proxy might), http400, malformed (not JSON), nochoices,
    huge (2 MiB), trickle (a byte every 20 ms, never the whole body), drip_headers (the status
    line, then a header byte every 50 ms for up to 10 s), surrogate (a reply holding a lone
    surrogate), ansi (a reply with terminal escapes and a forged log line), big_reply (900 kB of text).
    """

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.release = threading.Event()
        self.requests: list[dict] = []  # {"headers": {...}, "body": {...}}
        self.trickle_ended = threading.Event()
        self.trickle_outcome = ""
        self._cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._cond:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                    number = len(server.requests)
                    server._cond.notify_all()
                mode = server.mode
                if mode == "hang":
                    server.release.wait(WAIT_S)
                    mode = "ok"
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                elif mode == "ok":
                    reply = {
                        "id": f"c{number}",
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f" reply {number} "},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                    self._send(200, json.dumps(reply).encode())
                elif mode == "http500":
                    echo = f"upstream failed for {self.headers.get('Authorization')}"
                    self._send(500, json.dumps({"error": echo}).encode())
                elif mode.startswith("echo_at_"):  # the Authorization value starting at character N
                    pad = int(mode.rsplit("_", 1)[1]) - len('{"error": "')
                    echo = "x" * pad + str(self.headers.get("Authorization"))
                    self._send(502, json.dumps({"error": echo}).encode())
                elif mode == "reply_echo":  # a model that repeats the key it was (somehow) shown
                    text = f"my key is {API_KEY} and auth is Authorization: {self.headers.get('Authorization')}"
                    self._send(200, json.dumps({"choices": [{"message": {"content": text}}]}).encode())
                elif mode == "short":  # a Content-Length the body never reaches, then the connection closes
                    body = b'{"choices": [{"message": {"content": "cut'
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body) + 500))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                elif mode in REPLIES:
                    self._send(200, json.dumps({"choices": [{"message": {"content": REPLIES[mode]}}]}).encode())
                elif mode == "drip_headers":  # each byte well within the socket timeout, never an end
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    server.trickle_outcome = "server stopped"
                    for _ in range(200):
                        if server.release.wait(0.05):
                            break
                        try:
                            self.wfile.write(b"X")
                            self.wfile.flush()
                        except OSError:
                            server.trickle_outcome = "client hung up"
                            break
                    server.trickle_ended.set()
                elif mode == "http400":
                    self._send(400, b'{"error": "model not found"}')
                elif mode == "malformed":
                    self._send(200, b'{"choices": [ this is not json')
                elif mode == "nochoices":
                    self._send(200, b'{"choices": []}')
                elif mode == "huge":
                    self._send(200, b" " * (2 << 20))
                elif mode == "trickle":  # headers at once, then a byte every 20 ms for up to 5 s
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    server.trickle_outcome = "server stopped"
                    for _ in range(250):
                        if server.release.wait(0.02):
                            break
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            server.trickle_outcome = "client hung up"
                            break
                    server.trickle_ended.set()

            def _send(self, code: int, payload: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout) and closed the socket

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def wait_for_requests(self, count: int, timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def refused_url() -> str:
    """A port that was free a moment ago and has no listener: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def server():
    fake = FakeChatServer()
    yield fake
    fake.close()


def client_for(url: str, **kw) -> ChatClient:
    config = LLMConfig(
        **{
            "base_url": url,
            "model": "qwen2.5-0.5b-instruct",
            "api_key_env": KEY_ENV,
            "timeout_s": 2.0,
            "max_retries": 2,
            "backoff_s": 0.01,
            **kw,
        }
    )
    return ChatClient(config, environ={KEY_ENV: API_KEY})


def test_normal_reply(server):
    result = client_for(server.base_url).complete("be kind", 'The person said "hi"')
    assert (result.success, result.reply, result.error, result.attempts) == (True, "reply 1", "", 1)
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["body"] == {
        "model": "qwen2.5-0.5b-instruct",
        "stream": False,
        "max_tokens": 128,
        "temperature": 0.7,
        "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": 'The person said "hi"'}],
    }


def test_no_key_variable_means_no_authorization_header(server):
    client = ChatClient(LLMConfig(base_url=server.base_url + "/", api_key_env=KEY_ENV), environ={})
    assert client.complete("s", "u").success and not client.has_api_key
    assert "Authorization" not in server.requests[0]["headers"]
    assert "model" not in server.requests[0]["body"]  # no llm.model: the server's default


def test_slow_reply_past_the_timeout_is_retried_then_reported(server):
    server.mode = "hang"
    result = client_for(server.base_url, timeout_s=0.3, max_retries=1).complete("s", "u")
    assert (result.success, result.error_kind, result.attempts) == (False, ERROR_TIMEOUT, 2)
    assert "0.3 s" in result.error and result.reply == ""
    assert len(server.requests) == 2


def test_http_500_is_retried_and_the_echoed_key_is_redacted(server):
    server.mode = "http500"
    result = client_for(server.base_url, max_retries=2).complete("s", "u")
    assert (result.success, result.error_kind, result.attempts) == (False, ERROR_HTTP, 3)
    assert len(server.requests) == 3
    assert "HTTP 500" in result.error and "Bearer ***" in result.error
    assert API_KEY not in result.error


def test_http_400_is_not_retried(server):
    server.mode = "http400"
    result = client_for(server.base_url).complete("s", "u")
    assert (result.error_kind, result.attempts, len(server.requests)) == (ERROR_HTTP, 1, 1)
    assert "model not found" in result.error


@pytest.mark.parametrize("mode", ["malformed", "nochoices"])
def test_malformed_reply_is_reported_not_retried(server, mode):
    server.mode = mode
    result = client_for(server.base_url).complete("s", "u")
    assert (result.success, result.error_kind, result.attempts) == (False, ERROR_MALFORMED, 1)
    assert "not a chat-completions reply" in result.error


def test_a_server_that_trickles_bytes_still_times_out(server):
    server.mode = "trickle"
    result = client_for(server.base_url, timeout_s=0.3, max_retries=0).complete("s", "u")
    assert (result.success, result.error_kind) == (False, ERROR_TIMEOUT)
    # The client gave up while the server was still sending, not after it ran out of bytes.
    assert server.trickle_ended.wait(WAIT_S) and server.trickle_outcome == "client hung up"


def test_an_oversized_reply_is_malformed(server):
    server.mode = "huge"
    result = client_for(server.base_url).complete("s", "u")
    assert (result.error_kind, result.attempts) == (ERROR_MALFORMED, 1) and "larger than" in result.error


def test_connection_refused_is_retried_then_reported():
    result = client_for(refused_url(), max_retries=2).complete("s", "u")
    assert (result.success, result.error_kind, result.attempts) == (False, ERROR_CONNECTION, 3)
    assert "cannot reach endpoint" in result.error


def test_retries_stop_when_a_newer_prompt_waits_or_on_cancel(server):
    server.mode = "http500"
    result = client_for(server.base_url, max_retries=5).complete("s", "u", keep_trying=lambda: False)
    assert (result.attempts, result.error_kind) == (1, ERROR_HTTP) and "no retry" in result.error
    cancel = threading.Event()
    cancel.set()
    result = client_for(server.base_url, max_retries=5, backoff_s=60.0).complete("s", "u", cancel=cancel)
    assert result.attempts == 1 and len(server.requests) == 2


def test_the_key_shows_in_no_repr_and_credentials_in_urls_are_hidden():
    client = client_for("http://user:secret@127.0.0.1:9/v1")
    assert API_KEY not in repr(client) and "secret" not in repr(client)
    assert public_url("http://user:secret@host:8000/v1") == "http://host:8000/v1"
    assert public_url("https://host/v1") == "https://host/v1"
    with pytest.raises(ValueError, match="llm.base_url") as info:
        LLMConfig(base_url="user:secret@host/v1")
    assert "secret" not in str(info.value)


def test_endpoint_stats_follow_the_results(server):
    assert EndpointStats(enabled=False).snapshot()["llm_endpoint_state"] == ENDPOINT_DISABLED
    stats = EndpointStats(enabled=True)
    assert stats.state == ENDPOINT_UNKNOWN and stats.healthy
    client = client_for(server.base_url, timeout_s=0.2, max_retries=0)
    stats.record(client.complete("s", "u"))
    server.mode = "hang"
    stats.record(client.complete("s", "u"))
    snap = stats.snapshot()
    assert (snap["llm_requests_ok"], snap["llm_requests_failed"], snap["llm_timeouts"]) == ("1", "1", "1")
    assert snap["llm_endpoint_state"] == "slow (timeout)" and not stats.healthy
    server.mode = "ok"
    stats.record(client.complete("s", "u"))
    assert stats.state == ENDPOINT_OK and stats.healthy


@pytest.mark.parametrize("start", [280, 295, 299, 300, 64 * 1024 - 10])
def test_a_key_echoed_across_the_excerpt_cut_is_redacted(server, start):
    """The error excerpt is cut at 300 characters and the error body read up to 64 KiB: a key
    straddling either cut must leave no part of itself behind."""
    server.mode = f"echo_at_{start}"
    result = client_for(server.base_url, max_retries=0).complete("s", "u")
    assert result.error_kind == ERROR_HTTP and "HTTP 502" in result.error
    for n in range(6, len(API_KEY) + 1):  # no 6-character piece of the key anywhere
        assert all(API_KEY[i : i + n] not in result.error for i in range(len(API_KEY) - n + 1)), result.error


def test_a_reply_echoing_the_key_is_redacted(server):
    server.mode = "reply_echo"
    result = client_for(server.base_url).complete("s", "u")
    assert result.success and API_KEY not in result.reply
    assert result.reply.count("***") == 2 and "my key is" in result.reply


def test_a_body_cut_short_of_its_content_length_is_a_retried_transport_error(server):
    server.mode = "short"
    result = client_for(server.base_url, max_retries=1).complete("s", "u")
    assert (result.success, result.error_kind, result.attempts) == (False, ERROR_CONNECTION, 2)
    assert "short of the announced Content-Length" in result.error and len(server.requests) == 2


def test_a_server_that_drips_its_headers_is_cut_at_the_timeout(server):
    """Every header byte comes within the socket timeout, so only a deadline on the whole attempt
    ends it: before, a 2 s timeout held such a request for as long as the server went on (42 s)."""
    server.mode = "drip_headers"
    result = client_for(server.base_url, timeout_s=0.5, max_retries=0).complete("s", "u")
    assert (result.success, result.error_kind) == (False, ERROR_TIMEOUT)
    assert "0.5 s" in result.error
    assert server.trickle_ended.wait(WAIT_S) and server.trickle_outcome == "client hung up"
    assert result.latency_s < 5.0, result.latency_s  # the server drips for 10 s


def test_a_lone_surrogate_is_replaced_so_the_reply_can_be_published(server):
    server.mode = "surrogate"
    stats = EndpointStats(enabled=True)
    result = client_for(server.base_url).complete("s", "u")
    stats.record(result)
    assert result.success and result.repaired == 1
    assert result.reply == "I hear you \ufffd. Tell me more \U0001f600"
    result.reply.encode("utf-8")  # what a ROS string needs
    assert stats.snapshot()["llm_replies_repaired"] == "1" and stats.healthy
    assert encodable("plain") == ("plain", 0)


def test_a_big_reply_is_published_whole_but_logged_as_a_bounded_excerpt(server):
    server.mode = "big_reply"
    result = client_for(server.base_url).complete("s", "u")
    assert result.success and len(result.reply) == len(REPLIES["big_reply"].strip())
    line = log_excerpt(result.reply)
    assert len(line) < 260 and line.endswith(f"... [{len(result.reply)} characters]")


def test_log_excerpts_escape_what_could_forge_or_colour_a_line(server):
    server.mode = "ansi"
    result = client_for(server.base_url).complete("s", "u")
    line = log_excerpt(result.reply)
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert line == "fine\\x1b[31m\\n[ERROR] [llm_bridge_node]: forged line\\x1b[0m"
    assert log_excerpt("你好 \U0001f600") == "你好 \U0001f600"  # printable text in any script stays as it is
    assert log_excerpt("a\ud800b") == "a\\ud800b"


def test_unpublished_exchanges_are_counted_and_leave_the_endpoint_unhealthy():
    stats = EndpointStats(enabled=True)
    stats.record_unpublished("exchange not published: ValueError: boom")
    snap = stats.snapshot()
    assert snap["llm_replies_unpublished"] == "1" and snap["llm_endpoint_state"] == "replies not published"
    assert not stats.healthy and "boom" in snap["llm_last_error"]
