"""Sharing the app (issue 14): a token on every route, served for real on 127.0.0.1 only.

The server is started through the command line's own path with `--token` (what a non-loopback
`--host` does with a random token), on 127.0.0.1; every route Flask knows is asked without the token
and must answer 403; with it (as `?token=`, then the cookie, or a header) the page, its layout,
the thumbnails and the callbacks work, and the page shows no absolute paths.
"""

import argparse
import http.cookiejar
import json
import re
import socket
import threading
import urllib.error
import urllib.request

import dash
import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from werkzeug.serving import make_server

from visualizer.app import access, cli

TOKEN = "s3cret-token-for-the-tests"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("access")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    return folder, write_synthetic_embeddings(folder / "emb", 10, models=models)


@pytest.fixture(scope="module")
def served(files):
    """The app as `visualization_app.py --token ...` starts it, its server on 127.0.0.1 (a free port)."""
    folder, csv = files
    started = {}

    def run(app, host, port, debug, use_reloader):      # stands in for Dash.run: serve in a thread
        server = make_server("127.0.0.1", 0, app.server, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.update(app=app, server=server, thread=thread, host=host, debug=debug)

    parser = argparse.ArgumentParser()
    cli.configure(parser)
    args = parser.parse_args(["--embeddings", str(csv), "--device", "cpu", "--num-steps", "2", "--token", TOKEN])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dash.Dash, "run", lambda self, **kw: run(self, **kw))
        assert cli.run(args) == 0
    base = f"http://127.0.0.1:{started['server'].server_port}"
    yield {**started, "base": base, "folder": folder}
    started["server"].shutdown()
    started["thread"].join(10)


def _request(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None,
             opener=None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _every_route(app) -> list[tuple[str, str]]:
    """(method, path) for every rule Flask routes, its variables filled in."""
    out = []
    for rule in app.server.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def test_every_route_refuses_a_request_without_the_token(served):
    routes = _every_route(served["app"])
    paths = {p for _, p in routes}
    assert {"/", "/_dash-layout", "/_dash-dependencies", "/_dash-update-component", "/thumbs/x"} <= paths
    for method, path in [*routes, ("GET", "/thumbs/thumbs/0.png"), ("GET", "/?token=wrong"),
                         ("GET", "/_dash-component-suites/dash/dash-renderer/build/dash_renderer.min.js")]:
        data = b"{}" if method == "POST" else None
        for headers in ({}, {"Authorization": "token wrong"}, {"Cookie": "visualizer-token=wrong"}):
            status, body, _ = _request(served["base"] + path, method, data, {"Content-Type": "application/json",
                                                                            **headers})
            assert status == 403, (method, path, headers, status)
            assert b"access token" in body


def test_the_token_opens_every_route_and_the_page_shows_no_absolute_paths(served):
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, page, _ = _request(f"{served['base']}/?token={TOKEN}", headers={"Accept": "text/html"}, opener=browser)
    assert status == 200 and b"dash" in page
    assert [c.name for c in jar] == [f"visualizer-token-{served['server'].server_port}"]
    assert all(c.value == TOKEN for c in jar)
    status, layout, _ = _request(f"{served['base']}/_dash-layout", opener=browser)
    assert status == 200
    text = json.dumps(json.loads(layout), ensure_ascii=False)
    assert str(served["folder"]) not in text and "…/teacher.pkl" in text        # checkpoint paths shortened
    status, png, _ = _request(f"{served['base']}/thumbs/thumbs/0.png", opener=browser)
    assert status == 200 and png[:4] == b"\x89PNG"
    status, png, _ = _request(f"{served['base']}/thumbs/thumbs/0.png", headers={"Authorization": f"token {TOKEN}"})
    assert status == 200
    body = b'{"output": "reduction-arg.disabled", "inputs": []}'
    status, _, _ = _request(f"{served['base']}/_dash-update-component", "POST", body,
                            {"Content-Type": "application/json"}, opener=browser)
    assert status == 400                                   # past the token: now the request itself is judged
    assert served["host"] == "127.0.0.1" and served["debug"] is False


def test_the_token_in_the_address_is_dropped_after_the_first_visit(served):
    opener = urllib.request.build_opener(_NoRedirect)
    status, _, headers = _request(f"{served['base']}/?token={TOKEN}&x=1", headers={"Accept": "text/html"},
                                  opener=opener)
    assert status == 302 and headers["Location"].endswith("/?x=1")
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and TOKEN in cookie


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_who_needs_a_token(monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    assert access.access_token("127.0.0.1") is None and access.access_token("localhost") is None
    assert access.access_token("::1") is None and access.access_token("127.0.0.2") is None
    drawn = {access.access_token(host) for host in ("0.0.0.0", "192.168.1.20", "::", "myhost.example")}
    assert len(drawn) == 4 and all(t and len(t) >= 24 for t in drawn)   # a fresh random token each time
    assert access.access_token("0.0.0.0", "mine") == "mine"
    monkeypatch.setenv(access.TOKEN_ENV, "from-env")
    assert access.access_token("0.0.0.0") == "from-env" and access.access_token("127.0.0.1") == "from-env"
    assert access.start_url("0.0.0.0", 8050, "a b") == f"http://{socket.gethostname()}:8050/?token=a%20b"
    assert access.start_url("127.0.0.1", 8050, None) == "http://127.0.0.1:8050/"
    assert access.redact("from /home/me/ckpt/edm.pkl on cuda; see https://x.org/a/b") == \
        "from …/edm.pkl on cuda; see https://x.org/a/b"


def test_debug_mode_is_refused_when_shared(monkeypatch, capsys):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    assert cli.main(["--host", "0.0.0.0", "--debug"]) == 2
    assert "--debug" in capsys.readouterr().err
    assert cli.main(["--token", "t", "--debug"]) == 2


def test_on_loopback_only_loopback_names_are_served(files):
    """No token on 127.0.0.1: a page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) is refused."""
    from visualizer.app.config import AppConfig, load
    from visualizer.app.server import create_app

    _, csv = files
    client = create_app(load(AppConfig(embeddings=csv))).server.test_client()
    for host in ("localhost", "127.0.0.1:8050", "[::1]:8050", "localhost:8050"):
        assert client.get("/_dash-layout", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8050", "127.0.0.1.evil.example"):
        assert client.get("/_dash-layout", headers={"Host": host}).status_code == 403, host
