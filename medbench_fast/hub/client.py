"""Connection to the Hugging Face Hub: endpoint, token, offline mode, timeouts, retries, errors.

Settings are read from the environment when a command runs (not when ``huggingface_hub``
is imported), so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HOME`` set by the caller always
apply. Inside :func:`connection`, every request ``huggingface_hub`` sends must be answered
within ``MEDBENCH_HUB_TIMEOUT`` seconds (default 30) in total, however slowly the server
trickles its bytes (an upload or download gets its size at :data:`MIN_BODY_RATE` on top), and a
refused connection or a missed deadline raises :class:`HubUnreachable` at once instead of the
library's long reconnect loop; :func:`with_retries` retries HTTP 429 and 5xx answers with
exponential backoff. huggingface_hub 1.x and 2.x send through httpx (httpx2), bounded by a
transport given to :func:`huggingface_hub.set_client_factory`; 0.x through requests, bounded
by a session given to ``configure_http_backend`` (urllib3 connections with deadline sockets).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_ENV = "MEDBENCH_HUB_TIMEOUT"
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: How a user gives the Hub a token, in every message that asks for one.
LOGIN = "set HF_TOKEN or run `hf auth login`"


class HubError(Exception):
    """A Hub operation failed; the message says what and why, and never holds the token."""


class HubUnreachable(OSError):
    """The Hub could not be reached: connection refused or reset, name resolution, timeout."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    offline: bool
    timeout_s: float
    cache_dir: str

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint)


def settings(timeout_s: float | None = None) -> HubSettings:
    """The Hub settings in force now, from the environment (``timeout_s``, when given, instead of
    ``MEDBENCH_HUB_TIMEOUT``)."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    try:
        timeout = float(timeout_s or os.environ.get(TIMEOUT_ENV) or 30)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise HubError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r}: expected a positive number of seconds")
    if os.environ.get("HF_HUB_CACHE"):
        cache = os.environ["HF_HUB_CACHE"]
    else:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "huggingface")
        cache = os.path.join(home, "hub")
    return HubSettings(endpoint, offline, timeout, cache)


def token() -> str | None:
    """The user's token: ``HF_TOKEN``, else the ``huggingface_hub`` login store; ``None`` if neither."""
    from huggingface_hub import get_token

    return get_token()


#: Slowest accepted body rate (bytes/s) beyond the deadline: a file of N bytes gets N / this extra seconds.
MIN_BODY_RATE = 64 * 1024


class _Deadline(threading.local):
    """The time (``time.monotonic``) by which the request this thread is sending must be answered."""

    at: float | None = None

    def remaining(self, timeout: float | None) -> float | None:
        """``timeout`` cut to what is left of the deadline; 0 once it has passed."""
        if self.at is None:
            return timeout
        left = max(self.at - time.monotonic(), 0.0)
        return left if timeout is None else min(timeout, left)


_DEADLINE = _Deadline()


def _deadline_backend(httpcore, inner):
    """An httpcore network backend whose every socket wait ends at the thread's request deadline,
    so a server that trickles bytes cannot hold a request past it."""

    def cut(timeout):
        left = _DEADLINE.remaining(timeout)
        if left is not None and left <= 0:
            raise httpcore.ReadTimeout("the request deadline has passed")
        return left

    class Stream(httpcore.NetworkStream):
        def __init__(self, stream):
            self.stream = stream

        def read(self, max_bytes, timeout=None):
            return self.stream.read(max_bytes, cut(timeout))

        def write(self, buffer, timeout=None):
            self.stream.write(buffer, cut(timeout))

        def close(self):
            self.stream.close()

        def start_tls(self, ssl_context, server_hostname=None, timeout=None):
            return Stream(self.stream.start_tls(ssl_context, server_hostname, cut(timeout)))

        def get_extra_info(self, info):
            return self.stream.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            return Stream(inner.connect_tcp(host, port, cut(timeout), local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            return Stream(inner.connect_unix_socket(path, cut(timeout), socket_options))

        def sleep(self, seconds):
            inner.sleep(seconds)

    return Backend()


def _size(headers) -> int:
    size = headers.get("Content-Length", "")
    return int(size) if size.isdigit() else 0


class _DeadlineSocket:
    """A socket whose every wait ends at the thread's request deadline (urllib3 connections)."""

    def __init__(self, sock):
        self._sock, self._timeout = sock, sock.gettimeout()

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def settimeout(self, timeout):
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self):
        return self._timeout

    def _cut(self) -> None:
        left = _DEADLINE.remaining(self._timeout)
        if left is not None and left <= 0:
            raise socket.timeout("the request deadline has passed")
        self._sock.settimeout(left)

    def recv_into(self, *args):
        self._cut()
        return self._sock.recv_into(*args)

    def recv(self, *args):
        self._cut()
        return self._sock.recv(*args)

    def send(self, *args):
        self._cut()
        return self._sock.send(*args)

    def sendall(self, *args):
        self._cut()
        return self._sock.sendall(*args)

    def makefile(self, mode="r", buffering=None, **kwargs):
        """Buffered reads through :meth:`recv_into` (http.client reads the answer so)."""
        import io

        self._sock._io_refs += 1
        raw = socket.SocketIO(self, mode.replace("b", ""))
        return io.BufferedReader(raw) if "r" in mode else io.BufferedWriter(raw)


def _session_factory(timeout_s: float):
    """huggingface_hub < 1.0 (requests): sessions whose every request has the same total deadline as
    :func:`_client_factory`'s, through urllib3 connections whose sockets honour it."""
    import requests
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection

    def bounded(connection):
        class Connection(connection):
            def connect(self):
                super().connect()
                self.sock = _DeadlineSocket(self.sock)

        return Connection

    pools = {"http": type("Pool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": bounded(HTTPConnection)}),
             "https": type("Pool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": bounded(HTTPSConnection)})}

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

    class BoundedSession(requests.Session):
        """Total deadline on every request; unreachable Hub -> :class:`HubUnreachable` at once,
        a TLS or proxy failure -> :class:`HubError`."""

        def __init__(self):
            super().__init__()
            self.mount("http://", Adapter())
            self.mount("https://", Adapter())

        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout_s
            host = urlsplit(str(request.url)).netloc
            start = time.monotonic()
            sent = _size(request.headers)
            _DEADLINE.at = start + timeout_s + sent / MIN_BODY_RATE
            try:
                response = super().send(request, **kwargs)
            except requests.Timeout:
                raise HubUnreachable(f"{host}: no answer within {timeout_s:g} s") from None
            except (requests.exceptions.SSLError, requests.exceptions.ProxyError) as exc:
                raise HubError(f"{host}: {type(exc).__name__} (check the proxy and certificate settings)") from None
            except requests.ConnectionError as exc:
                if "deadline has passed" in str(exc):
                    raise HubUnreachable(f"{host}: no answer within {timeout_s:g} s") from None
                reason = type(exc.__context__ or exc).__name__
                raise HubUnreachable(f"{host}: cannot connect ({reason})") from None
            _DEADLINE.at = start + timeout_s + (sent + _size(response.headers)) / MIN_BODY_RATE
            return response

    return BoundedSession


def _client_factory(http, timeout_s: float, event_hooks: dict):
    """huggingface_hub >= 1.0 (``http`` is httpx, or httpx2 from 2.0): clients whose every request
    has a total deadline of ``timeout_s`` (plus the sizes of the bodies sent and received at
    :data:`MIN_BODY_RATE`: uploads and downloads of large files); unreachable or silent Hub ->
    :class:`HubUnreachable` at once, TLS or proxy failure -> :class:`HubError`."""
    import sys

    def mapped(host: str, exc: Exception) -> Exception:
        if isinstance(exc, http.TimeoutException):
            return HubUnreachable(f"{host}: no answer within {timeout_s:g} s")
        if isinstance(exc, http.ProxyError) or isinstance(exc.__context__, ssl.SSLError):
            return HubError(f"{host}: {type(exc.__context__ or exc).__name__} (check the proxy and certificate "
                            f"settings)")
        return HubUnreachable(f"{host}: cannot connect ({type(exc).__name__}: {exc})")

    class Body(http.SyncByteStream):
        def __init__(self, stream, host: str):
            self.stream, self.host = stream, host

        def __iter__(self):
            try:
                yield from self.stream
            except http.TransportError as exc:
                raise mapped(self.host, exc) from None

        def close(self):
            self.stream.close()

    class DeadlineTransport(http.HTTPTransport):
        def __init__(self):
            super().__init__()
            pool = self._pool  # httpx's connection pool; its network backend is the one seam httpcore offers
            pool._network_backend = _deadline_backend(sys.modules[type(pool).__module__.split(".")[0]],
                                                      pool._network_backend)

        def handle_request(self, request):
            host = request.url.netloc.decode("ascii", "replace")
            start = time.monotonic()
            sent = _size(request.headers)
            _DEADLINE.at = start + timeout_s + sent / MIN_BODY_RATE
            try:
                response = super().handle_request(request)
            except http.TransportError as exc:
                raise mapped(host, exc) from None
            _DEADLINE.at = start + timeout_s + (sent + _size(response.headers)) / MIN_BODY_RATE
            return http.Response(status_code=response.status_code, headers=response.headers,
                                 stream=Body(response.stream, host), extensions=response.extensions)

    def factory():
        return http.Client(event_hooks=event_hooks, follow_redirects=True, timeout=timeout_s,
                           transport=DeadlineTransport())

    return factory


def _http_library():
    """The module ``huggingface_hub`` sends requests with: httpx (1.x), httpx2 (2.x); ``None`` before
    1.0 (requests, configured through ``configure_http_backend``)."""
    import importlib

    import huggingface_hub

    if not hasattr(huggingface_hub, "set_client_factory"):
        return None
    return importlib.import_module(type(huggingface_hub.get_session()).__module__.split(".")[0])


@contextlib.contextmanager
def connection(hub: HubSettings | None = None):
    """Route ``huggingface_hub``'s requests through bounded clients (sessions before 1.0) for the block."""
    import huggingface_hub

    hub = hub or settings()
    http = _http_library()
    if http is None:
        huggingface_hub.configure_http_backend(backend_factory=_session_factory(hub.timeout_s))
        try:
            yield hub
        finally:
            huggingface_hub.configure_http_backend()
        return
    from huggingface_hub.utils import _http as library

    hooks = huggingface_hub.get_session().event_hooks  # the library's own: offline mode, request ids
    huggingface_hub.set_client_factory(_client_factory(http, hub.timeout_s, hooks))
    try:
        yield hub
    finally:
        huggingface_hub.set_client_factory(library.default_client_factory)


def with_retries(call, *, attempts: int = 5, base_s: float = 1.0, max_s: float = 30.0, sleep=time.sleep):
    """``call()``, retried on HTTP 429 and 5xx with exponential backoff (``Retry-After`` honoured)."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(attempts - 1):
        try:
            return call()
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code not in RETRY_STATUSES:
                raise
            try:
                wait = float(exc.response.headers.get("Retry-After", base_s * 2**attempt))
            except ValueError:
                wait = base_s * 2**attempt
            sleep(min(max(wait, 0.0), max_s))
    return call()


def license_of(info) -> str | None:
    """The license of a ``ModelInfo``: its card's ``license``, else its ``license:`` tag."""
    card = info.card_data.to_dict() if info.card_data is not None else {}
    if card.get("license"):
        return str(card["license"])
    return next((t.split(":", 1)[1] for t in info.tags or [] if t.startswith("license:")), None)


def explain(exc: Exception, what: str) -> HubError:
    """A :class:`HubError` naming ``what`` and the cause of a ``huggingface_hub`` error."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, HubUnreachable):
        return HubError(f"{what}: the Hub is unreachable ({exc})")
    if isinstance(exc, GatedRepoError):
        return HubError(f"{what}: the repository is gated; accept its conditions on its Hub page and use a token "
                        f"that has access ({LOGIN})")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{what}: revision not found on the Hub")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"{what}: repository not found (or private, and the token in use cannot see it)")
    if isinstance(exc, LocalEntryNotFoundError):
        return HubError(f"{what}: not in the local Hub cache and the Hub cannot be used (offline)")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return HubError(f"{what}: the Hub rejected the credentials (HTTP 401); {LOGIN}")
        if status == 403:
            return HubError(f"{what}: the token in use has no permission for this (HTTP 403)")
        reason = exc.server_message or getattr(exc.response, "reason_phrase", None) or getattr(
            exc.response, "reason", None) or ""
        return HubError(f"{what}: HTTP {status} from the Hub{': ' + reason.splitlines()[0] if reason else ''}")
    first = str(exc).strip().splitlines()
    return HubError(f"{what}: {type(exc).__name__}{': ' + first[0] if first else ''}")
