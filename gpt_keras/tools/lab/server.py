"""The lab as a web server: served only to the address it was started on, and refusing what the page never needs.

A page the teacher has open in another tab can send requests to the lab, and a site can make its own name
point at 127.0.0.1 (DNS rebinding) to read the answers. So every request passes `LabGuard` first, in front
of everything Gradio serves:

- its `Host` must be an address the lab serves (`allowed_host`): a rebound site's requests carry its
  own name, never ours;
- an `Origin`, when a browser sends one, must be the lab's own page: no other page may drive the lab,
  and no other origin is ever answered with `Access-Control-Allow-Origin`;
- no uploads (the page has no file inputs): the upload route is refused before any byte is read;
- a request body must state its length, at most `MAX_REQUEST_BYTES`.

Gradio keeps the rest bounded with its own launch options (`launch_options`): uploads limited to 0 bytes
as a second lock, a bounded queue and a bounded number of sessions kept in memory, no extra worker
processes serving files. A port in use or a bad address is one line (`LabServerError`), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import sys
import warnings
from typing import Any
from urllib.parse import urlsplit

from gpt_keras.core.checks import GPTKerasError

MAX_REQUEST_BYTES = 2**20  # the page's requests are a few kB; a pasted prompt over the cap still gets its message
MAX_QUEUED = 64  # "sample" and "compare" requests waiting their turn; more are refused by Gradio ("queue full")
MAX_SESSIONS = 64  # browser tabs whose state (the sampled steps) Gradio keeps; the oldest is forgotten first
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_LOG = logging.getLogger("gpt_keras.tools.lab")
PROXY_HOSTS_ENV = "GPT_KERAS_LAB_HOSTS"  # comma-separated names a notebook's proxy uses; ".example.org" = its subdomains
_COLAB_PROXY = ".googleusercontent.com"  # where Colab's proxyPort serves a kernel's port to the student's browser


class LabServerError(GPTKerasError):
    """The lab cannot serve on this address or port (in use, not this computer's, not an address)."""


# --- where the lab may be reached ---------------------------------------------------------------------

def allowed_host(hostname: str | None, served: str) -> bool:
    """Whether a request's `Host` (its name, without the port) is an address the lab serves on `served`.

    Served on a loopback address, the lab answers to the loopback names; on one address, to that address;
    on every address (0.0.0.0 or ::), to any IP address (a rebinding site's requests carry a name, never
    an address) and to this computer's name.
    """
    if not hostname:
        return False
    hostname, served = hostname.lower().rstrip("."), served.lower().strip("[]")
    if served in _WILDCARDS:
        return _is_ip(hostname) or hostname in _LOOPBACK_NAMES or hostname in _machine_names()
    if served in _LOOPBACK_NAMES or _is_loopback(served):
        return hostname in _LOOPBACK_NAMES or hostname == served
    return hostname == served


def proxy_host(hostname: str | None) -> bool:
    """Whether `hostname` is a notebook proxy's name the lab also answers to, inside the notebook cell.

    Colab and JupyterHub show the lab through their own proxy, whose requests carry the proxy's name:
    Colab's is trusted when the lab runs in Colab; any other is named in `GPT_KERAS_LAB_HOSTS`.
    """
    if not hostname:
        return False
    hostname = hostname.lower().rstrip(".")
    names = [name.strip().lower() for name in os.environ.get(PROXY_HOSTS_ENV, "").split(",") if name.strip()]
    if "google.colab" in sys.modules:
        names.append(_COLAB_PROXY)
    return any(hostname == name or (name.startswith(".") and hostname.endswith(name)) for name in names)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(text: str) -> bool:
    return _is_ip(text) and ipaddress.ip_address(text).is_loopback


def _machine_names() -> set[str]:
    name = socket.gethostname().lower()
    return {name, f"{name}.local"}


# --- the guard in front of Gradio ---------------------------------------------------------------------

class LabGuard:
    """ASGI middleware that refuses what the lab never serves (see the module's docstring), before Gradio.

    Starlette's `TrustedHostMiddleware` cannot say "any IP address" (the rule for a lab on 0.0.0.0), and
    Gradio's own CORS answer allows every localhost port, so both checks live here, in one place, and this
    wraps Gradio's whole application (its CORS middleware included), so a refused request gets no CORS
    answer at all.

    Args:
        app: the ASGI application to guard (Gradio's middleware stack).
        served: the address the lab was started on (`--host`).
    """

    def __init__(self, app, served: str, max_body: int = MAX_REQUEST_BYTES, events=None):
        self.app, self.served, self.max_body = app, served, max_body
        self.events = events  # () -> Gradio's events (`Blocks.fns`), to check a call's number of values

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None and self.events is not None and _is_event_call(scope):
            body = await _read_body(receive)
            refusal = _arity_refusal(body, scope.get("path", ""), self.events())
            receive = _replay(body)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason = refusal
        _LOG.info("lab: refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope.get("path", ""), reason)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        from starlette.responses import PlainTextResponse

        await PlainTextResponse(reason, status_code=status)(scope, receive, send)

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, reason) to refuse the request with, or None to serve it."""
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not (allowed_host(_host_name(host), self.served) or proxy_host(_host_name(host))):
            return 403, "refused: this lab answers only at the address it was started on"
        origin = headers.get("origin")
        if origin is not None and not _own_origin(origin, host, scope):
            return 403, "refused: only the lab's own page may send it requests"
        path = scope.get("path", "").rstrip("/")
        if path.endswith("/upload") or path.endswith("/upload_progress"):
            return 403, "refused: the lab takes no uploads"
        if scope["type"] == "http" and scope.get("method") in _BODY_METHODS:
            length = headers.get("content-length", "")
            if not (length.isascii() and length.isdigit()):
                return 411, "refused: a request body must state its length"
            if len(length) > len(str(self.max_body)) or int(length) > self.max_body:
                return 413, f"refused: a request body may have at most {self.max_body:,} bytes"
        return None


def _is_event_call(scope) -> bool:
    """A call of one of the page's events: Gradio's queue, or its API by name."""
    path = scope.get("path", "").rstrip("/")
    return scope.get("method") == "POST" and (path.endswith("/queue/join") or "/run/" in path or "/call/" in path)


async def _read_body(receive) -> bytes:
    """The whole request body (its length is already held to `MAX_REQUEST_BYTES`)."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes):
    """A `receive` that hands Gradio the body this guard has already read."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _arity_refusal(body: bytes, path: str, events) -> tuple[int, str] | None:
    """Refuses a call with fewer values than its event takes: Gradio would print a traceback for it.

    Anything else (bad JSON, unknown events, wrong values) is left to Gradio and to the lab's own
    checks of each value, which answer on the page.
    """
    import json

    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(call, dict) or not isinstance(call.get("data"), list):
        return None
    name = path.rstrip("/").rsplit("/", 1)[-1]
    by_index, by_name = call.get("fn_index"), lambda fn: getattr(fn, "api_name", None) == name
    event = events.get(by_index) if isinstance(by_index, int) else next(filter(by_name, events.values()), None)
    wanted = len(getattr(event, "inputs", None) or ())
    if event is not None and len(call["data"]) < wanted:
        return 422, f"refused: this event takes {wanted} values, the request gave {len(call['data'])}"
    return None


def _own_origin(origin: str, host: str, scope) -> bool:
    """The lab's own page: the origin of the address asked for, or a notebook proxy showing it (whose
    page is served over https while the request reaches the lab over plain http)."""
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    if origin.lower() == f"{scheme}://{host}".lower():
        return True
    return proxy_host(urlsplit(origin).hostname)


def _host_name(host: str) -> str | None:
    """The name in a `Host` header ("localhost:7860" -> "localhost"), None when the port is not a number."""
    try:
        parts = urlsplit(f"//{host}")
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return None
    return parts.hostname


def guarding_lifespan(served: str):
    """A FastAPI lifespan that puts `LabGuard` in front of the whole application as it starts.

    It runs once the application's middleware stack is built and before the server accepts a
    connection (Uvicorn opens its socket after the startup), so no request ever passes unguarded;
    `serve` checks afterwards that the guard is in place.
    """
    @contextlib.asynccontextmanager
    async def lifespan(app):
        stack = app.middleware_stack or app.build_middleware_stack()
        app.middleware_stack = LabGuard(stack, served, events=lambda: app.get_blocks().fns)
        yield

    return lifespan


# --- starting and stopping ----------------------------------------------------------------------------

def check_address(host: str, port: int | None) -> None:
    """Refuses, in one line, an address the lab cannot serve on: not an address, not this computer's,
    or a port in use, before anything is loaded. With `port` None only the address is checked (Gradio
    then takes the first free port from 7860)."""
    if not isinstance(host, str) or not host.strip():
        raise LabServerError("--host is empty: give an address of this computer, e.g. 127.0.0.1")
    name = host.strip("[]")
    if all(c.isdigit() or c == "." for c in name) and not _is_ip(name):
        raise LabServerError(f"--host {host[:80]!r} is not an IP address (four numbers from 0 to 255, e.g. 127.0.0.1)")
    family = socket.AF_INET6 if ":" in name else socket.AF_INET  # as Uvicorn chooses
    try:
        family, kind, proto, _, address = socket.getaddrinfo(name, port or 0, family, socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as error:
        raise LabServerError(f"--host {host[:80]!r} is not an address this computer can serve on "
                             f"({getattr(error, 'strerror', None) or error})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            raise _address_error(host, port, error) from None


def _address_error(host: str, port: int | None, error: OSError) -> LabServerError:
    if error.errno == errno.EADDRINUSE:
        return LabServerError(f"port {port} on {host} is in use (another lab or program): choose another "
                              "with --port, or leave --port out to take the first free one")
    if error.errno == errno.EADDRNOTAVAIL:
        return LabServerError(f"--host {host} is not an address of this computer (use 127.0.0.1 for this computer "
                              "only, or 0.0.0.0 for every network it is on)")
    if error.errno == errno.EACCES:
        return LabServerError(f"port {port} on {host}: permission denied (ports below 1024 need administrator "
                              "rights): choose another with --port")
    return LabServerError(f"cannot serve on {host} port {port}: {error.strerror or error}")


def launch_options(host: str, port: int | None, inline: bool | None) -> dict[str, Any]:
    """Gradio's `launch` arguments for the lab: local, offline, guarded and bounded."""
    return dict(server_name=host, server_port=port, share=False, inline=inline, prevent_thread_lock=True,
                quiet=True, ssr_mode=False, mcp_server=False, pwa=False, enable_monitoring=False,
                footer_links=[], show_error=False, strict_cors=True, max_file_size=0, num_workers=0,
                state_session_capacity=MAX_SESSIONS, app_kwargs={"lifespan": guarding_lifespan(host)})


def serve(app, host: str, port: int | None, *, inline: bool | None = None, **page_options) -> None:
    """Launches the Gradio `app` on `host:port` behind `LabGuard`, in a background thread.

    Args:
        page_options: Gradio's `launch` arguments for the page's look (theme, css).

    Raises:
        LabServerError: the address or port cannot be served (checked before launching, and again
            if Gradio finds no free port after all).
    """
    check_address(host, port)
    from starlette.exceptions import StarletteDeprecationWarning

    # Not the teacher's business in the lab's terminal: Gradio's use of Starlette's old names (at the first
    # queued click), and Keras' note that attention over a one-word prompt is a softmax over one key (it is)
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning, module=r"gradio\.")
    warnings.filterwarnings("ignore", message="You are using a softmax over axis", module=r"keras\.")
    app.queue(max_size=MAX_QUEUED)
    try:
        app.launch(**launch_options(host, port, inline), **page_options)
    except OSError:  # taken between our check and Gradio's, or every port Gradio tries is taken
        if port is None:
            from gradio.http_server import INITIAL_PORT_VALUE, TRY_NUM_PORTS

            raise LabServerError(f"no free port from {INITIAL_PORT_VALUE} to {INITIAL_PORT_VALUE + TRY_NUM_PORTS - 1} "
                                 f"on {host}: choose one with --port") from None
        raise _address_error(host, port, OSError(errno.EADDRINUSE, "in use")) from None
    if not isinstance(app.server_app.middleware_stack, LabGuard):  # a Gradio or Starlette that starts otherwise
        app.close(verbose=False)
        raise LabServerError("the lab could not put its request guard in front of Gradio; "
                             "install the Gradio version of the [lab] extra")
