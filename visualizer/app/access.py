"""Who may use the server: this computer only (loopback, no token), or whoever holds the access token.

Bound to loopback (127.0.0.1, the default) the app serves only this computer; requests whose Host
header is not a loopback name are refused, so a web page elsewhere cannot reach it by pointing its
own name at 127.0.0.1 (DNS rebinding). Bound to anything else it needs a token, as Jupyter does:
`access_token(host, given)` returns the one given (`--token`, or $VISUALIZER_TOKEN) or a random one,
printed in the start-up URL. `protect(server, token)` then checks every route, /thumbs/ and the
callback endpoints included: the token comes as `?token=` (the page answers with a cookie and drops
it from the address), as that cookie, or as an `Authorization: token <t>` header; anything else is
a 403. `redact(text)` shortens absolute paths to their last part for what remote viewers see.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import secrets
import socket
import urllib.parse

from flask import Flask, Response, g, redirect, request

TOKEN_ENV = "VISUALIZER_TOKEN"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
FORBIDDEN = ("403 Forbidden: this visualizer is shared with an access token. Open the address printed when it "
             "started (http://<host>:<port>/?token=...).\n")
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"<>|]+/)+")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this computer only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str, given: str | None = None) -> str | None:
    """The token the server asks for: `given`, else $VISUALIZER_TOKEN, else a random one unless `host` is loopback."""
    token = given or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    return token


def start_url(host: str, port: int, token: str | None) -> str:
    """The address to open: this machine's name for an all-interfaces host, the token in the query."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={urllib.parse.quote(token)}" if token else "")


def redact(text: str) -> str:
    """Absolute paths shortened to their last part (`/home/me/ckpt/edm.pkl` -> `…/edm.pkl`)."""
    return _ABSOLUTE.sub("…/", text)


def _cookie_name() -> str:
    """One cookie per port: two visualizers on one host keep their own tokens."""
    host = request.host
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    port = tail.rsplit(":", 1)[1] if ":" in tail else ""
    return f"visualizer-token-{port}" if port.isdigit() else "visualizer-token"


def _host_name() -> str:
    host = request.host
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(sent: str | None, token: str) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), token.encode())


def protect(server: Flask, token: str | None) -> None:
    """Refuse, on every route, requests without `token` (or, with None, requests not addressed to loopback)."""

    @server.before_request
    def check_access():
        if token is None:
            if _host_name() not in LOOPBACK_NAMES:
                return Response("403 Forbidden: this visualizer answers only to localhost / 127.0.0.1 (start it "
                                "with --host and a token to share it).\n", status=403, mimetype="text/plain")
            return None
        given = request.args.get("token")
        header = request.headers.get("Authorization", "")
        bearer = header[6:].strip() if header.lower().startswith("token ") else None
        if not (_same(given, token) or _same(request.cookies.get(_cookie_name()), token) or _same(bearer, token)):
            return Response(FORBIDDEN, status=403, mimetype="text/plain")
        if given is not None:
            g.visualizer_set_cookie = True
            if request.method == "GET" and request.accept_mimetypes.accept_html:
                # Keep the token out of the address bar, the history and Referer headers.
                rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
                target = request.path + ("?" + urllib.parse.urlencode(rest) if rest else "")
                return redirect(target, code=302)
        return None

    @server.after_request
    def remember(response: Response) -> Response:
        if token is not None and g.get("visualizer_set_cookie"):
            response.set_cookie(_cookie_name(), token, httponly=True, samesite="Lax", path="/")
        return response
