"""Connection to the Hugging Face Hub: endpoint, token, offline mode, timeouts, retries, errors.

Settings are read from the environment when a command runs (not when ``huggingface_hub``
is imported), so ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HOME`` set by the caller always
apply. Inside :func:`connection`, every request ``huggingface_hub`` sends has a bounded
timeout (``MEDBENCH_HUB_TIMEOUT`` seconds, default 30) and a refused connection or a timeout
raises :class:`HubUnreachable` at once instead of the library's long reconnect loop;
:func:`with_retries` retries HTTP 429 and 5xx answers with exponential backoff.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_ENV = "MEDBENCH_HUB_TIMEOUT"
RETRY_STATUSES = (429, 500, 502, 503, 504)


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


def settings() -> HubSettings:
    """The Hub settings in force now, from the environment."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    try:
        timeout = float(os.environ.get(TIMEOUT_ENV) or 30)
    except ValueError:
        raise HubError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r}: expected a number of seconds") from None
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


def _session_factory(timeout_s: float):
    import requests

    class BoundedSession(requests.Session):
        """Default timeout on every request; unreachable Hub -> :class:`HubUnreachable` at once,
        a TLS or proxy failure -> :class:`HubError`."""

        def request(self, method, url, *args, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout_s
            host = urlsplit(str(url)).netloc
            try:
                return super().request(method, url, *args, **kwargs)
            except requests.Timeout:
                raise HubUnreachable(f"{host}: no answer within {kwargs['timeout']} s") from None
            except (requests.exceptions.SSLError, requests.exceptions.ProxyError) as exc:
                raise HubError(f"{host}: {type(exc).__name__} (check the proxy and certificate settings)") from None
            except requests.ConnectionError as exc:
                reason = type(exc.__context__ or exc).__name__
                raise HubUnreachable(f"{host}: cannot connect ({reason})") from None

    return BoundedSession


@contextlib.contextmanager
def connection(hub: HubSettings | None = None):
    """Route ``huggingface_hub``'s requests through bounded sessions for the block."""
    from huggingface_hub import configure_http_backend

    hub = hub or settings()
    configure_http_backend(backend_factory=_session_factory(hub.timeout_s))
    try:
        yield hub
    finally:
        configure_http_backend()


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
                        f"that has access (HF_TOKEN or `huggingface-cli login`)")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{what}: revision not found on the Hub")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"{what}: repository not found (or private, and the token in use cannot see it)")
    if isinstance(exc, LocalEntryNotFoundError):
        return HubError(f"{what}: not in the local Hub cache and the Hub cannot be used (offline)")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return HubError(f"{what}: the Hub rejected the credentials (HTTP 401); check HF_TOKEN or run "
                            f"`huggingface-cli login`")
        if status == 403:
            return HubError(f"{what}: the token in use has no permission for this (HTTP 403)")
        reason = exc.server_message or exc.response.reason or ""
        return HubError(f"{what}: HTTP {status} from the Hub{': ' + reason.splitlines()[0] if reason else ''}")
    first = str(exc).strip().splitlines()
    return HubError(f"{what}: {type(exc).__name__}{': ' + first[0] if first else ''}")
