"""One worker fetching one range: request, validate, then stream into the file.

Nothing of a response is written before :func:`accel._util.remote.check_partial` accepted it.
The hot loop does one ``readinto`` and one ``os.pwrite`` per chunk, with no lock: the
worker's position lives in its own :class:`~accel._engine.scheduler.Claim`, which the
scheduler reads.
"""

from __future__ import annotations

import http.client
import logging
import socket
from typing import Dict, List, Mapping, Optional, Tuple, cast

import requests
import urllib3

from accel._http import zerocopy
from accel._http.base import Response, Session
from accel._http.session import RETRY_STATUSES
from accel._util.remote import (
    RangesUnsupported,
    RemoteChanged,
    Retryable,
    Validators,
    check_partial,
    parse_content_range,
    parse_retry_after,
    validators_of,
)
from accel._util.urls import redact
from accel.exceptions import HTTPError, NetworkError, UsageError

log = logging.getLogger(__name__)

#: (connect, read) timeouts in seconds.
Timeouts = Tuple[float, float]

#: Statuses that may mean an expired signed URL: the original URL is resolved again once.
REFRESH_STATUSES = frozenset({401, 403, 404, 410})

_REQUEST_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)
#: What a read of a body may raise when its connection fails (http.client raises ValueError
#: on a response closed under it).
NETWORK_ERRORS = (*_REQUEST_ERRORS, ValueError)


def interrupt(resp: Optional[Response]) -> None:
    """Shut the socket of ``resp`` down, waking a read blocked on it (any thread)."""
    sock = zerocopy.socket_of(resp)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def request_range(
    session: Session,
    url: str,
    start: int,
    end: Optional[int],
    validators: Optional[Validators],
    *,
    timeout: Timeouts,
) -> Response:
    """GET ``bytes=start-end`` (``end`` None: to the end) and validate the answer.

    Returns a streaming 206 response that passed :func:`check_partial`. Raises
    :class:`RemoteChanged` for a 200 to a request with ``If-Range`` (the file changed),
    :class:`RangesUnsupported` for a 200 without it, :class:`Retryable` for transient
    failures, :class:`HTTPError` for a final error status.
    """
    headers = range_headers(start, end, validators)
    if_range = headers.get("If-Range")
    resp = get(session, url, headers, timeout)
    try:
        if resp.status_code == 416:
            raise RemoteChanged(f"range {start}- is not satisfiable any more")
        raise_for_status(resp)
        try:
            check_partial(resp.status_code, resp.headers, start, end, validators)
        except RangesUnsupported:
            if if_range and resp.status_code == 200:
                raise RemoteChanged(
                    "the server sent the whole file for If-Range: it changed"
                ) from None
            raise
    except BaseException:
        resp.close()
        raise
    return resp


def range_headers(
    start: int, end: Optional[int], validators: Optional[Validators]
) -> Dict[str, str]:
    """``Range`` for ``bytes=start-end`` (open-ended when ``end`` is None), plus ``If-Range``."""
    headers = {"Range": f"bytes={start}-{'' if end is None else end}"}
    if validators is not None and validators.if_range:
        headers["If-Range"] = validators.if_range
    return headers


def first_byte(
    session: Session, url: str, validators: Optional[Validators], timeout: Timeouts
) -> Tuple[str, int, Validators]:
    """GET byte 0 of ``url`` to check it: (final URL, complete length, validators seen).

    No ``If-Range`` is sent; ``validators`` are compared by :func:`check_partial`.
    """
    resp = get(session, url, {"Range": "bytes=0-0"}, timeout)
    try:
        raise_for_status(resp)
        total = check_partial(resp.status_code, resp.headers, 0, 0, validators)
        return resp.url, total, validators_of(resp.headers, total)
    finally:
        resp.close()


def get(
    session: Session,
    url: str,
    headers: Mapping[str, str],
    timeout: Timeouts,
    method: str = "GET",
) -> Response:
    """A streaming GET (or ``method``); transient failures (refused, reset, timeouts) become
    :class:`Retryable`.

    A TLS failure is final (:class:`NetworkError`); so is a bad redirect (:class:`HTTPError`)
    and a header requests refuses to send (:class:`UsageError`).
    """
    try:
        resp: requests.Response = cast(requests.Session, session).request(
            method, url, headers=headers, stream=True, timeout=timeout, allow_redirects=True
        )
        return resp
    except requests.exceptions.SSLError as exc:
        raise NetworkError(f"TLS failure with {_host(url)}: {reason(exc)}") from exc
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) as exc:
        unreachable = _unreachable(exc)
        if unreachable is not None:
            raise unreachable from exc
        raise Retryable(f"cannot connect to {_host(url)}: {reason(exc)}") from exc
    except requests.exceptions.TooManyRedirects as exc:
        raise HTTPError(f"too many redirects for {redact(url)}", url=redact(url)) from exc
    except requests.exceptions.InvalidSchema as exc:
        if "SOCKS" in str(exc):  # a socks proxy from the environment, PySocks missing
            raise UsageError("a SOCKS proxy needs PySocks: pip install 'accel[socks]'") from exc
        raise HTTPError(f"bad redirect from {redact(url)}: {exc}", url=redact(url)) from exc
    except requests.exceptions.InvalidURL as exc:
        raise HTTPError(f"bad redirect from {redact(url)}: {exc}", url=redact(url)) from exc
    except requests.exceptions.InvalidHeader as exc:
        raise UsageError(f"invalid header: {exc}") from exc
    except _REQUEST_ERRORS as exc:
        raise Retryable(f"request failed: {reason(exc)}") from exc


def raise_for_status(resp: Response) -> None:
    """Raise :class:`HTTPError` for an error status, :class:`Retryable` for 429 and 5xx.

    A retryable status carries the server's ``Retry-After`` (capped at a minute).
    """
    status = resp.status_code
    if status < 400:
        return
    reason = f"HTTP {status} {cast(requests.Response, resp).reason or ''}".strip()
    url = redact(resp.url)
    if status in RETRY_STATUSES:
        # Uncapped here: RetryPolicy.delay applies the policy's retry_after_cap.
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), cap=float("inf"))
        raise Retryable(f"{reason} from {url}", retry_after=retry_after, status=status)
    raise HTTPError(f"{reason} from {url}", status=status, url=url)


def response_start(resp: Response) -> int:
    """The first offset a validated response brings (0 for a 200 stream; -1 if unknown)."""
    if resp.status_code == 200:
        return 0
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed[0] if parsed else -1


def response_end(resp: Response) -> Optional[int]:
    """The last offset a validated 206 covers (None for a 200 stream)."""
    if resp.status_code != 206:
        return None
    parsed = parse_content_range(resp.headers.get("Content-Range"))
    return parsed[1] if parsed else None


def finish(resp: Response) -> None:
    """Close ``resp``, keeping its connection for reuse when its body was read to the end."""
    raw = cast(requests.Response, resp).raw
    fp = getattr(raw, "_fp", None)
    if fp is not None and getattr(fp, "isclosed", lambda: False)():
        release = getattr(raw, "release_conn", None)
        if release is not None:
            release()
    resp.close()


class Unreachable(Retryable):
    """The host name does not resolve, or the host refuses the connection.

    Retried like any failure once a download is under way (an outage passes); on the very
    first contact it is reported at once (a typo'd host, nothing listening).
    """


def _unreachable(exc: BaseException) -> Optional[Unreachable]:
    """An :class:`Unreachable` in accel's words if ``exc`` is a failed resolution or a refusal."""
    conn_error: Optional[urllib3.exceptions.NewConnectionError] = None
    for cause in _chain(exc):
        if isinstance(cause, urllib3.exceptions.NewConnectionError) and conn_error is None:
            conn_error = cause
        conn = getattr(conn_error, "conn", None)
        host = getattr(conn, "host", None)
        if isinstance(cause, socket.gaierror):
            return Unreachable(f"cannot resolve host {host or '(unknown)'}")
        if isinstance(cause, ConnectionRefusedError):
            where = f"{_bracket(host)}:{getattr(conn, 'port', None)}" if host else "the server"
            return Unreachable(f"connection refused by {where}")
    return None


def _chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and what caused it, outermost first (requests and urllib3 wrap their causes)."""
    found: List[BaseException] = []
    todo: List[BaseException] = [exc]
    while todo:
        cur = todo.pop(0)
        if any(cur is seen for seen in found):
            continue
        found.append(cur)
        for inner in (
            getattr(cur, "reason", None),
            *(cur.args[:1] if cur.args else ()),
            cur.__cause__,
            cur.__context__,
        ):
            if isinstance(inner, BaseException):
                todo.append(inner)
    return found


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error chain."""
    seen = set()
    cur: Optional[BaseException] = exc
    best = str(exc)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        inner = getattr(cur, "reason", None) or (cur.args[0] if cur.args else None)
        if isinstance(inner, BaseException):
            cur = inner
            best = str(cur) or best
            continue
        break
    if isinstance(cur, OSError) and cur.strerror:
        return cur.strerror
    return best
