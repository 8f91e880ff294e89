"""Downloads against a small HTTP server on 127.0.0.1 that speaks Range and can drop a connection midway."""

from __future__ import annotations

import argparse
import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from visualizer.checkpoints import download as dl
from visualizer.errors import UserError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, no repeating chunk boundary that could hide an offset error
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if self.path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        if srv.no_length and not start:  # a body that ends when the connection does
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(rest)
            self.close_connection = True
            return
        if srv.short_length and not start:  # a Content-Length that stops short of the file, honestly sent
            rest = rest[: len(rest) - srv.short_length]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if srv.drip_every is not None:  # one byte at a time: never idle long enough for a read timeout
            for i in range(len(rest)):
                time.sleep(srv.drip_every)
                try:
                    self.wfile.write(rest[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return
            return
        if srv.cut_after is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(rest[: srv.cut_after])
            self.wfile.flush()
            srv.cut_after = None
            if srv.replace_after_cut is not None:  # and publish another file of the same length meanwhile
                srv.files[self.path] = srv.replace_after_cut
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(rest)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {"/ckpt/model.pkl": PAYLOAD}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None
        self.ignore_range = False
        self.redirects: dict[str, str] = {}
        self.no_length = False
        self.short_length = 0
        self.drip_every: float | None = None
        self.replace_after_cut: bytes | None = None

    def url(self, path: str = "/ckpt/model.pkl") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path / "cache"))


def _get(server, dest, **kw) -> Path:
    kw.setdefault("progress", False)
    kw.setdefault("retry_wait", 0)
    return dl.download_url(server.url(), dest, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_checks_hash_and_second_call_makes_no_request(server, tmp_path):
    dest = tmp_path / "d" / "model.pkl"
    assert _get(server, dest, sha256=DIGEST.upper(), expected_size=len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/ckpt/model.pkl", None)]
    assert _get(server, dest, sha256=DIGEST, expected_size=len(PAYLOAD)) == dest
    assert len(server.requests) == 1
    assert _leftovers(dest.parent) == ["model.pkl"]  # no .part, no .lock


def test_default_destination_is_the_cache(server, tmp_path):
    path = dl.download_url(server.url(), progress=False)
    assert path == tmp_path / "cache" / "model.pkl"
    assert path.read_bytes() == PAYLOAD
    assert dl.resolve_checkpoint(server.url()) == path  # already cached: no new request
    assert len(server.requests) == 1


def test_cut_connection_fails_then_rerun_resumes_with_range(server, tmp_path):
    dest = tmp_path / "model.pkl"
    server.cut_after = 300_000
    with pytest.raises(UserError, match="rerun resumes"):
        _get(server, dest, retries=0)
    part = dest.with_name("model.pkl.part")
    assert not dest.exists() and part.stat().st_size == 300_000
    _get(server, dest, sha256=DIGEST, retries=0)
    assert server.requests[-1] == ("/ckpt/model.pkl", "bytes=300000-")
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_cut_connection_is_retried_automatically(server, tmp_path):
    dest = tmp_path / "model.pkl"
    server.cut_after = 123_457
    _get(server, dest, sha256=DIGEST, retries=2, progress=True)
    assert [r for _, r in server.requests] == [None, "bytes=123457-"]
    assert dest.read_bytes() == PAYLOAD


def test_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "d" / "model.pkl"
    with pytest.raises(UserError) as info:
        _get(server, dest, sha256="0" * 64)
    msg = str(info.value)
    assert server.url() in msg and "0" * 64 in msg and DIGEST in msg
    assert _leftovers(dest.parent) == []


def test_wrong_size_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "model.pkl"
    with pytest.raises(UserError, match=f"expected {len(PAYLOAD) + 1}"):
        _get(server, dest, expected_size=len(PAYLOAD) + 1)
    assert _leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "model.pkl"
    dest.with_name("model.pkl.part").write_bytes(b"x" * 5000)  # stale bytes that must not survive
    server.ignore_range = True
    _get(server, dest, sha256=DIGEST)
    assert server.requests == [("/ckpt/model.pkl", "bytes=5000-")]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_with_416_is_verified_and_kept(server, tmp_path):
    dest = tmp_path / "model.pkl"
    dest.with_name("model.pkl.part").write_bytes(PAYLOAD)
    _get(server, dest, sha256=DIGEST)
    assert server.requests == [("/ckpt/model.pkl", f"bytes={len(PAYLOAD)}-")]
    assert dest.read_bytes() == PAYLOAD


def test_overlong_part_answered_with_416_starts_over(server, tmp_path):
    dest = tmp_path / "model.pkl"
    dest.with_name("model.pkl.part").write_bytes(PAYLOAD + b"junk")
    _get(server, dest, sha256=DIGEST)
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 4}-", None]
    assert dest.read_bytes() == PAYLOAD


def test_damaged_existing_file_is_downloaded_again(server, tmp_path):
    dest = tmp_path / "model.pkl"
    dest.write_bytes(b"not the model")
    _get(server, dest, sha256=DIGEST)
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_missing_file_on_server_is_a_user_error(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        dl.download_url(server.url("/nope.pkl"), tmp_path / "nope.pkl", progress=False, retry_wait=0)
    assert len(server.requests) == 1  # a 404 is not retried
    assert _leftovers(tmp_path) == []


def test_concurrent_downloads_of_one_file_fetch_it_once(server, tmp_path):
    dest = tmp_path / "model.pkl"
    results, errors = [], []

    def worker():
        try:
            results.append(_get(server, dest, sha256=DIGEST))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and results == [dest] * 4
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 1
    assert _leftovers(tmp_path) == ["model.pkl"]


def test_resolve_checkpoint_local_paths(tmp_path):
    missing = tmp_path / "no-such-model.pkl"
    with pytest.raises(UserError, match="no-such-model.pkl"):
        dl.resolve_checkpoint(missing)
    with pytest.raises(UserError, match="no-such-model.pkl"):
        dl.resolve_checkpoint(str(missing))
    missing.write_bytes(b"x")
    assert dl.resolve_checkpoint(missing) == missing
    assert dl.resolve_checkpoint(str(missing)) == missing


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("VISUALIZER_CACHE")
    assert dl.cache_dir() == tmp_path / "xdg" / "visualizer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dl.cache_dir() == tmp_path / "home" / ".cache" / "visualizer"


# -- the registry and the command, with the network replaced by recorders ---------------------------


def test_registry_names_the_official_files():
    edm = dl.lookup("edm")
    assert edm is dl.KNOWN_CHECKPOINTS["edm-imagenet-64"]
    assert edm.url == "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/edm-imagenet-64x64-cond-adm.pkl"
    assert edm.sha256 is None and edm.size is None
    for fid, step in [("1.28", 548000), ("1.51", 193500), ("2.61", 405500)]:
        c = dl.lookup(f"dmd2-fid{fid}")
        assert c is dl.lookup(f"dmd2-imagenet-64-fid{fid}")
        assert c.repo_id == "tianweiy/DMD2"
        assert c.filename.startswith("model/imagenet/") and c.filename.endswith(f"_fid{fid}_checkpoint_model_{step}"
                                                                                 "/pytorch_model.bin")
    with pytest.raises(UserError, match="dmd2-fid1.28"):
        dl.lookup("dmd3")


def test_fetch_hands_the_right_names_to_the_downloaders(tmp_path):
    calls = []

    def fake_hub(**kw):
        calls.append(("hub", kw))
        return str(Path(kw["local_dir"]) / kw["filename"])

    def fake_url(url, dest, **kw):
        calls.append(("url", url, dest, kw))
        return dest

    run = dl.DMD2_RUNS["fid1.51"]
    got = dl.fetch("dmd2-fid1.51", tmp_path, hub_download=fake_hub, url_download=fake_url)
    assert calls[-1] == ("hub", {"repo_id": "tianweiy/DMD2", "filename": f"model/imagenet/{run}/pytorch_model.bin",
                                 "local_dir": tmp_path / "dmd2"})
    assert got == tmp_path / "dmd2" / "model" / "imagenet" / run / "pytorch_model.bin"
    got = dl.fetch("edm", tmp_path, progress=False, hub_download=fake_hub, url_download=fake_url)
    assert got == tmp_path / "edm" / "edm-imagenet-64x64-cond-adm.pkl"
    assert calls[-1] == ("url", dl.lookup("edm").url, got, {"sha256": None, "expected_size": None, "progress": False})


def test_fetch_turns_hub_failures_into_user_errors(tmp_path):
    def offline(**kw):
        raise ConnectionError("no network")

    with pytest.raises(UserError, match="tianweiy/DMD2.*no network"):
        dl.fetch("dmd2-fid2.61", tmp_path, hub_download=offline)


def test_command_line_selection():
    parser = argparse.ArgumentParser()
    dl.configure(parser)

    def pick(*argv: str) -> list[str]:
        args = parser.parse_args(list(argv))
        return dl.selected(args.which, args.all)

    assert pick() == ["edm-imagenet-64", "dmd2-imagenet-64-fid1.28"]
    assert pick("--all") == list(dl.KNOWN_CHECKPOINTS)
    assert pick("--which", "dmd2-fid2.61", "edm", "edm") == ["edm-imagenet-64", "dmd2-imagenet-64-fid2.61"]
    assert parser.parse_args([]).dest == Path("checkpoints")
    with pytest.raises(UserError):
        pick("--which", "sd15")
    with pytest.raises(SystemExit):
        parser.parse_args(["--all", "--which", "edm"])



# -- faults an attack on the downloader found, each served by the local server -------------------------

PAYLOAD2 = bytes(reversed(PAYLOAD))  # another file of the same length
DIGEST2 = hashlib.sha256(PAYLOAD2).hexdigest()


def test_short_content_length_is_not_taken_as_the_end(server, tmp_path):
    server.short_length = 1000
    dest = _get(server, tmp_path / "model.pkl")
    assert dest.read_bytes() == PAYLOAD          # Content-Range gave the real size: the rest came by a resume
    assert [r for _, r in server.requests] == ["bytes=0-", f"bytes={len(PAYLOAD) - 1000 - dl.RESUME_OVERLAP}-"]
    with pytest.raises(UserError, match=f"the server says the file has {len(PAYLOAD) - 1000} bytes, "
                                        f"expected {len(PAYLOAD)}"):
        _get(server, tmp_path / "sized.pkl", expected_size=len(PAYLOAD))
    assert _leftovers(tmp_path) == ["model.pkl"]


def test_resume_answered_with_other_bytes_starts_over(server, tmp_path):
    dest = tmp_path / "model.pkl"
    server.cut_after = 300_000
    server.replace_after_cut = PAYLOAD2
    _get(server, dest, expected_size=len(PAYLOAD), retries=2)
    assert dest.read_bytes() == PAYLOAD2         # all of the new file, none of the old
    assert [r for _, r in server.requests] == [None, f"bytes={300_000 - dl.RESUME_OVERLAP}-", None]


def test_body_without_length_is_capped(server, tmp_path):
    server.no_length = server.ignore_range = True   # no Content-Length, no Content-Range: it ends when it closes
    with pytest.raises(UserError, match="sent more than the limit of 100000 bytes"):
        _get(server, tmp_path / "model.pkl", max_size=100_000)
    assert _leftovers(tmp_path) == []
    assert _get(server, tmp_path / "model.pkl").read_bytes() == PAYLOAD    # under the cap
    server.no_length = server.ignore_range = False
    with pytest.raises(UserError, match="says the file has .* more than the limit of 1000"):  # refused unread
        _get(server, tmp_path / "capped.pkl", max_size=1000)
    assert _leftovers(tmp_path) == ["model.pkl"]


def test_redirects_stay_within_the_origin(server, tmp_path):
    other = _Server()
    thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        server.redirects["/moved.pkl"] = other.url()           # another origin (another port)
        server.redirects["/local.pkl"] = "file:///etc/passwd"
        server.redirects["/same.pkl"] = "/ckpt/model.pkl"      # the same origin: followed
        for path, where in (("/moved.pkl", f"redirected to {other.url().rsplit('/', 2)[0]}"), ("/local.pkl", "file:")):
            with pytest.raises(UserError, match=f"{where}.*not allowed"):
                dl.download_url(server.url(path), tmp_path / "m.pkl", progress=False, retry_wait=0)
        assert other.requests == [] and _leftovers(tmp_path) == []
        assert dl.download_url(server.url("/same.pkl"), tmp_path / "s.pkl", sha256=DIGEST,
                               progress=False).read_bytes() == PAYLOAD
    finally:
        other.shutdown()
        other.server_close()
        thread.join(5)


def test_redirect_policy_of_a_known_file_allows_its_listed_hosts_over_https():
    import urllib.parse
    import urllib.request

    policy = dl._RedirectPolicy(urllib.parse.urlparse("https://files.example.org/a.pkl"), ("cdn.example.org",))
    req = urllib.request.Request("https://files.example.org/a.pkl")
    assert policy.redirect_request(req, None, 302, "Found", {}, "https://cdn.example.org/x").full_url == \
        "https://cdn.example.org/x"
    same = "https://files.example.org/b.pkl"
    assert policy.redirect_request(req, None, 302, "Found", {}, same).full_url == same
    for bad in ("http://cdn.example.org/x", "https://evil.example.org/x", "http://files.example.org/a.pkl"):
        with pytest.raises(dl._Refused):
            policy.redirect_request(req, None, 302, "Found", {}, bad)


def test_url_without_a_file_name_is_refused_before_any_request(server, tmp_path):
    for path in ("/ckpt/..", "/%2e%2e", "/ckpt/.hidden"):
        with pytest.raises(UserError, match="cannot name a file"):
            dl.download_url(server.url(path), progress=False)
    assert server.requests == [] and _leftovers(tmp_path / "cache") == []


def test_overall_deadline_stops_a_slow_server(server, tmp_path):
    server.drip_every = 0.2          # a byte every 0.2 s: the 2 s read timeout never fires
    start = time.monotonic()
    with pytest.raises(UserError, match="within its deadline of 1 s.*is kept and a rerun resumes it"):
        _get(server, tmp_path / "model.pkl", timeout=2, deadline=1)
    assert time.monotonic() - start < 1 + 2 + 2       # the deadline, at most one read timeout, slack
    assert _leftovers(tmp_path) == ["model.pkl.part"]


# -- trust on first use: the official files' sha256 and size, recorded in the cache folder ----------------


@pytest.fixture
def official(server, monkeypatch):
    """The local server's file standing in for the official EDM pickle (no hash shipped)."""
    c = dl.KnownCheckpoint("edm-imagenet-64", "stand-in", "model.pkl", url=server.url())
    monkeypatch.setitem(dl.KNOWN_CHECKPOINTS, c.name, c)
    return c


def test_first_download_records_the_official_file_and_later_uses_check_it(server, official, tmp_path):
    import json

    got = dl.fetch("edm", tmp_path / "ckpt", progress=False)
    assert got == tmp_path / "ckpt" / "edm" / "model.pkl" and got.read_bytes() == PAYLOAD
    record = json.loads(dl.records_path().read_text())[server.url()]
    assert (record["sha256"], record["size"], record["files"]) == (DIGEST, len(PAYLOAD), [str(got.resolve())])
    fetched = len(server.requests)
    assert dl.fetch("edm", tmp_path / "ckpt", progress=False) == got     # checked against the record, no request
    assert dl.resolve_checkpoint(server.url()) == tmp_path / "cache" / "model.pkl"   # a second copy, checked too
    assert len(server.requests) == fetched + 1 and server.requests[-1][1] is None   # hash known: a plain GET

    server.files["/ckpt/model.pkl"] = PAYLOAD2         # the server now has another file under the same URL
    got.unlink()
    with pytest.raises(UserError, match=f"sha256 {DIGEST2}, expected {DIGEST} \\(recorded on its first download"):
        dl.fetch("edm", tmp_path / "ckpt", progress=False)
    assert not got.exists()

    got.write_bytes(PAYLOAD2)                          # a local copy that changed is refused where it is loaded
    with pytest.raises(UserError, match="the file changed"):
        dl.resolve_checkpoint(got)
    with pytest.raises(UserError, match="the file changed"):
        dl.resolve_checkpoint(str(got.parent))


def test_sha256_pins_the_hash(server, official, tmp_path):
    parser = argparse.ArgumentParser()
    dl.configure(parser)
    with pytest.raises(UserError, match=f"expected {'0' * 64} \\(pinned\\)"):
        dl.fetch("edm", tmp_path, progress=False, sha256="0" * 64)
    assert not dl.records_path().exists() and not (tmp_path / "edm" / "model.pkl").exists()
    args = parser.parse_args(["--which", "edm", "--sha256", DIGEST.upper(), "--dest", str(tmp_path), "--no-progress"])
    assert dl.run(args) == 0 and dl.recorded(server.url())["sha256"] == DIGEST
    with pytest.raises(UserError, match="exactly one checkpoint"):
        dl.run(parser.parse_args(["--all", "--sha256", DIGEST]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--which", "edm", "--sha256", "abc"])


def test_hub_files_are_trusted_on_first_use(tmp_path):
    served = [PAYLOAD]

    def hub(**kw):  # stands in for hf_hub_download: writes the file where it would
        path = Path(kw["local_dir"]) / kw["filename"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(served[0])
        return str(path)

    got = dl.fetch("dmd2-fid1.28", tmp_path, hub_download=hub)
    assert dl.recorded(dl.lookup("dmd2-fid1.28").record_key)["sha256"] == DIGEST
    assert dl.fetch("dmd2-fid1.28", tmp_path, hub_download=hub) == got
    got.write_bytes(PAYLOAD2)
    with pytest.raises(UserError, match="the file changed"):
        dl.fetch("dmd2-fid1.28", tmp_path, hub_download=hub)
    with pytest.raises(UserError, match="the file changed"):
        dl.resolve_checkpoint(got.parent)              # the run folder, as --student takes it
