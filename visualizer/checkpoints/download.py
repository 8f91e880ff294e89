"""`python -m visualizer download`: fetch the official EDM and DMD2 ImageNet-64 checkpoints, once.

Examples:

    python -m visualizer download                       # edm + dmd2-fid1.28 into checkpoints/
    python -m visualizer download --all --dest /data/ckpt
    python -m visualizer download --which dmd2-fid1.51 dmd2-fid2.61
    python -m visualizer download --which edm --sha256 <64 hex digits>   # pin the file's hash

Layout under --dest (default checkpoints/):

    edm/edm-imagenet-64x64-cond-adm.pkl                          the EDM teacher (NVIDIA CDN)
    dmd2/model/imagenet/<run>/pytorch_model.bin                  a DMD2 student (Hugging Face tianweiy/DMD2)
    dmd2/.cache/huggingface/                                     huggingface_hub's own bookkeeping

Either the .bin or its <run>/ folder can be passed as --student. Rerunning skips finished files and
resumes interrupted ones. Checkpoints given by URL elsewhere (e.g. --teacher https://...) are cached
in $VISUALIZER_CACHE, else $XDG_CACHE_HOME/visualizer, else ~/.cache/visualizer.

Trust on first use: no hash ships with the package (none has been checked against the real files
here). The first time an official file is fetched its sha256 and size go to `known_files.json` in
that cache folder; every later download, rerun or load of it is checked against them, and a file
that changed is refused. `--sha256` pins a hash instead.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from visualizer.checkpoints.files import file_sha256
from visualizer.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no lock; concurrent downloads of one file are the user's to avoid
    fcntl = None

DMD2_REPO = "tianweiy/DMD2"
DMD2_RUNS = {
    "fid1.28": "imagenet_gan_classifier_genloss3e-3_diffusion1000_lr5e-7_resume_fid1.28_checkpoint_model_548000",
    "fid1.51": "imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch_fid1.51_checkpoint_model_193500",
    "fid2.61": "imagenet_lr2e-6_scratch_fid2.61_checkpoint_model_405500",
}
GiB = 1 << 30
DEFAULT_MAX_BYTES = 4 * GiB          # no plain-URL download grows beyond this (a known file has its own cap)
DEFAULT_DEADLINE_S = 3 * 3600.0      # a whole download_url call, retries included
RESUME_OVERLAP = 1 << 16             # bytes re-read and compared when resuming without a hash to check
RECORDS_NAME = "known_files.json"    # trust on first use: sha256 and size of every official file fetched


@dataclass(frozen=True)
class KnownCheckpoint:
    """An official file: a plain URL (fetched by download_url) or a Hugging Face repo file (by huggingface_hub).

    size and sha256 stay None until someone has checked them against the real file; a guessed hash
    would only turn a good download into an error. Until then the first download records them
    (`known_files.json`). `hosts`: the hosts a plain-URL download may be redirected to besides its
    own; `max_size`: the most bytes its download may bring.
    """

    name: str
    summary: str
    filename: str                    # URL downloads: the local file name; Hub downloads: the path in the repo
    url: str | None = None
    repo_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    hosts: tuple[str, ...] = ()
    max_size: int | None = None

    @property
    def short(self) -> str:
        """The name the command line takes: edm, dmd2-fid1.28, ..."""
        return self.name.replace("-imagenet-64", "")

    @property
    def record_key(self) -> str:
        """Its key in known_files.json: the URL, or hf://<repo>/<path in the repo>."""
        return self.url or f"hf://{self.repo_id}/{self.filename}"


def _registry() -> dict[str, KnownCheckpoint]:
    edm_file = "edm-imagenet-64x64-cond-adm.pkl"
    items = [KnownCheckpoint("edm-imagenet-64", "EDM teacher, ImageNet 64x64 class-conditional (ADM UNet)",
                             edm_file, url=f"https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/{edm_file}",
                             max_size=2 * GiB)]
    items += [KnownCheckpoint(f"dmd2-imagenet-64-{fid}", f"DMD2 one-step student, FID {fid[3:]}",
                              f"model/imagenet/{run}/pytorch_model.bin", repo_id=DMD2_REPO)
              for fid, run in DMD2_RUNS.items()]
    return {c.name: c for c in items}


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = _registry()
DEFAULT_SELECTION = ("edm-imagenet-64", "dmd2-imagenet-64-fid1.28")


def lookup(name: str) -> KnownCheckpoint:
    """A known checkpoint by full name (dmd2-imagenet-64-fid1.28) or short name (dmd2-fid1.28)."""
    for c in KNOWN_CHECKPOINTS.values():
        if name in (c.name, c.short):
            return c
    known = ", ".join(c.short for c in KNOWN_CHECKPOINTS.values())
    raise UserError(f"unknown checkpoint {name!r}; choose from {known}")


# -- where things go ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$VISUALIZER_CACHE, else $XDG_CACHE_HOME/visualizer, else ~/.cache/visualizer (not created here)."""
    if own := os.environ.get("VISUALIZER_CACHE"):
        return Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "visualizer"


def is_url(value: str | Path) -> bool:
    """An http(s) URL given as a string (a Path never is one)."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def known_url(url: str) -> KnownCheckpoint | None:
    """The official checkpoint served at exactly `url`, if any."""
    return next((c for c in KNOWN_CHECKPOINTS.values() if c.url == url), None)


def resolve_checkpoint(path_or_url: str | Path) -> Path:
    """A local checkpoint path as given, or an http(s) URL downloaded once into cache_dir().

    A URL of an official file comes back only once the file matches its sha256 (shipped, or recorded
    on first download); a local file that was downloaded as an official file is checked against its
    record too, so a file changed since is refused.
    """
    if is_url(path_or_url):
        known = known_url(path_or_url)
        return download_url(str(path_or_url), sha256=known and known.sha256, expected_size=known and known.size)
    path = Path(path_or_url).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    verify_recorded(path)
    return path


# -- trust on first use ------------------------------------------------------------------------------


def records_path() -> Path:
    return cache_dir() / RECORDS_NAME


def _read_records() -> dict[str, dict]:
    try:
        data = json.loads(records_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UserError(f"{records_path()}: cannot be read ({e}); fix or delete it (it records the sha256 of "
                        "official checkpoints first downloaded here)") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f"{records_path()}: not a record of downloaded files; fix or delete it")
    return data


def recorded(key: str) -> dict | None:
    """What the first download of `key` (a URL or hf://repo/path) recorded: sha256, size, date, files."""
    return _read_records().get(key)


def _record(key: str, path: Path, sha256: str, size: int) -> None:
    """Add (or confirm) the record of `key`, and remember `path` as a copy of it."""
    target = records_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(target.name + ".lock")):
        records = _read_records()
        entry = records.get(key)
        if entry is None or entry.get("sha256") != sha256:
            entry = {"sha256": sha256, "size": size, "first_fetched": datetime.date.today().isoformat(), "files": []}
        files = set(entry.get("files", []))
        files.add(str(path.resolve()))
        entry["files"] = sorted(files)
        records[key] = entry
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        os.replace(tmp, target)


def _trusted(key: str, pinned: str | None) -> tuple[str | None, int | None, str]:
    """(sha256, size, where it comes from) for a file: the pinned hash, else its record, else nothing."""
    if pinned:
        return pinned.lower(), None, "pinned"
    entry = recorded(key)
    if entry is None:
        return None, None, ""
    return entry.get("sha256"), entry.get("size"), f"recorded on its first download ({entry.get('first_fetched')}, " \
                                                     f"{records_path()})"


def verify_recorded(path: Path) -> None:
    """A recorded download of an official file (`path`, or a file directly in the folder `path`) must still
    match its record: size and sha256."""
    try:
        records = _read_records()
    except UserError:
        return                      # a damaged record file is reported where downloads read it
    where = path.resolve()
    for key, entry in records.items():
        for name in entry.get("files", []):
            if Path(name) == where or Path(name).parent == where:
                _check_file(Path(name), entry.get("sha256"), entry.get("size"), key,
                            f"recorded on its first download ({entry.get('first_fetched')}, {records_path()})")


def _check_file(path: Path, sha256: str | None, size: int | None, source: str, why: str) -> None:
    if size is not None and path.stat().st_size != size:
        raise UserError(f"{path} has {path.stat().st_size} bytes, but {source} had {size} bytes when {why}; "
                        "delete it and download it again")
    if sha256 is not None and (actual := file_sha256(path)) != sha256:
        raise UserError(f"{path} has sha256 {actual}, but {source} had {sha256} ({why}); the file changed: "
                        "delete it and download it again, or pin the new hash with --sha256")


# -- one URL, resumable ------------------------------------------------------------------------------


class _Retryable(Exception):
    """A transfer that stopped early or a server hiccup: worth another attempt from where it stopped."""


class _Refused(Exception):
    """A response the download must not follow or keep (a redirect elsewhere, too many bytes): no retry.

    `discard`: the part file goes too (its bytes cannot be trusted or resumed).
    """

    def __init__(self, message: str, discard: bool = False):
        super().__init__(message)
        self.discard = discard


_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same origin or, over https, to one of the listed hosts."""

    def __init__(self, origin: urllib.parse.ParseResult, hosts: tuple[str, ...]):
        self.origin, self.hosts = origin, hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlparse(urllib.parse.urljoin(req.full_url, newurl))
        same = (target.scheme, target.netloc) == (self.origin.scheme, self.origin.netloc)
        listed = target.scheme == "https" and target.hostname in self.hosts
        if not (same or listed):
            allowed = ", ".join([self.origin.netloc, *self.hosts])
            raise _Refused(f"the server redirected to {target.scheme}://{target.netloc}, which is not allowed "
                           f"for this file (allowed: {allowed})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class _Transfer:
    """One download_url call: where the bytes go, what is known about them, and its limits."""

    url: str
    part: Path
    sha256: str | None
    expected_size: int | None
    max_size: int
    deadline: float
    deadline_at: float
    timeout: float
    chunk_size: int
    progress: bool
    opener: urllib.request.OpenerDirector

    def remaining(self) -> float:
        """Seconds left before the deadline; past it, the download stops (the part file is kept)."""
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            raise _Refused(f"it did not finish within its deadline of {self.deadline:g} s")
        return left


def download_url(url: str, dest: str | Path | None = None, *, sha256: str | None = None,
                 expected_size: int | None = None, progress: bool = True, chunk_size: int = 1 << 20,
                 timeout: float = 60, retries: int = 3, retry_wait: float = 1.0,
                 deadline: float = DEFAULT_DEADLINE_S, max_size: int | None = None) -> Path:
    """Fetch url to dest once: an existing dest that passes the checks costs no request.

    Bytes go to `<dest>.part`, which a later attempt (an automatic retry, up to `retries`, or a rerun)
    continues with a Range request. Without a hash to check at the end, a resume re-reads the last
    64 KiB and starts over if they differ (the file changed on the server), and the first request
    asks for `bytes=0-` so that the file's size comes in Content-Range, not only in a Content-Length
    that could stop short. Only a complete file whose size and sha256 check out is moved to dest,
    atomically; a wrong hash removes the part file, so a bad download never looks finished.

    Limits: `timeout` per socket operation, `deadline` seconds for the whole call (retries included),
    at most `max_size` bytes (default: the known file's cap, else 4 GiB; exactly `expected_size` when
    given), redirects only within the URL's origin or, over https, to the hosts listed for a known
    file. An official file (a URL of KNOWN_CHECKPOINTS) is checked against the sha256 and size its
    first download recorded in `known_files.json` (trust on first use), which records them when this
    is its first download; `sha256` pins a hash instead.
    """
    known = known_url(url)
    sha256, recorded_size, why = _trusted(known.record_key, sha256) if known else \
        ((sha256 or "").lower() or None, None, "given")
    expected_size = expected_size if expected_size is not None else recorded_size
    if dest is None:
        name = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
        if not _SAFE_NAME.fullmatch(name):
            raise UserError(f"cannot name a file after {url}; give a destination")
        dest = cache_dir() / name
    dest = Path(dest)
    try:
        if not _finished(dest, sha256, expected_size):
            cap = expected_size if expected_size is not None else \
                max_size or (known and known.max_size) or DEFAULT_MAX_BYTES
            policy = _RedirectPolicy(urllib.parse.urlparse(url), known.hosts if known else ())
            t = _Transfer(url, dest.with_name(dest.name + ".part"), sha256, expected_size, cap, deadline,
                          time.monotonic() + deadline, timeout, chunk_size, progress,
                          urllib.request.build_opener(policy))
            dest.parent.mkdir(parents=True, exist_ok=True)
            with _locked(dest.with_name(dest.name + ".lock")):
                if not _finished(dest, sha256, expected_size):  # another process may have finished it meanwhile
                    _fetch_with_retries(t, retries, retry_wait)
                    _verify(url, t.part, sha256, expected_size, why)
                    os.replace(t.part, dest)
        if known:
            _record(known.record_key, dest, sha256 or file_sha256(dest), dest.stat().st_size)
    except OSError as e:  # the destination itself: a folder, not writable, a full disk
        raise UserError(f"could not download {url} to {dest}: {e}") from e
    return dest


def _fetch_with_retries(t: _Transfer, retries: int, retry_wait: float) -> None:
    """Brings t.part to the whole file, retrying what is worth retrying; UserError otherwise."""
    failures = 0
    while True:
        try:
            t.remaining()
            _fetch_part(t)
            return
        except urllib.error.HTTPError as e:
            e.close()
            if e.code not in _RETRY_STATUS or failures == retries:
                raise UserError(f"could not download {t.url}: HTTP {e.code} {e.reason}") from e
        except _Refused as e:
            if e.discard:
                t.part.unlink(missing_ok=True)
            raise UserError(f"could not download {t.url}: {e}{_kept(t.part)}") from e
        except (_Retryable, urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if failures == retries:
                raise UserError(f"could not download {t.url}: {_reason(e)}{_kept(t.part)}") from e
        failures += 1
        time.sleep(max(0.0, min(retry_wait * 2 ** (failures - 1), 30, t.deadline_at - time.monotonic())))


def _fetch_part(t: _Transfer) -> None:
    """One request that brings t.part to the full file, or raises; t.part keeps whatever arrived.

    With neither a size nor a hash to check the result against, even the first request asks for a
    range (`bytes=0-`): a server that speaks Range then states the file's size in Content-Range,
    apart from the Content-Length, so a short Content-Length cannot pass for the end of the file.
    """
    part = t.part
    have = _size(part)
    if t.expected_size is not None and have > t.expected_size:
        part.unlink()
        have = 0
    if t.expected_size is not None and have == t.expected_size:
        return  # complete from an earlier run; the caller verifies it
    overlap = min(have, RESUME_OVERLAP) if t.sha256 is None else 0
    start = have - overlap
    ranged = bool(have) or (t.sha256 is None and t.expected_size is None)
    request = urllib.request.Request(t.url, headers={"User-Agent": "visualizer-download"})
    if ranged:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = t.opener.open(request, timeout=min(t.timeout, t.remaining()))
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        # Nothing left to send from byte `start`: either part is complete or it is longer than the file.
        total = _range_total(e.headers.get("Content-Range"))
        e.close()
        if total is not None and have == total:
            return
        part.unlink()
        raise _Retryable(f"server refused to resume from byte {start}; starting over") from None
    with response:
        if ranged and response.status == 206:
            if _range_start(response.headers.get("Content-Range")) != start:
                part.unlink(missing_ok=True)
                raise _Retryable(f"server resumed from another byte than {start}; starting over")
            total = _range_total(response.headers.get("Content-Range"))
            if overlap:
                _check_overlap(t, response, start, overlap)
            mode = "ab"
        else:  # 200: a fresh download, or a server that ignores Range; either way the body is the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            have, mode = 0, "wb"
        if total is not None and t.expected_size is not None and total != t.expected_size:
            raise _Refused(f"the server says the file has {total} bytes, expected {t.expected_size}", discard=True)
        if total is not None and total > t.max_size:
            raise _Refused(f"the server says the file has {total} bytes, more than the limit of {t.max_size}",
                           discard=True)
        with open(part, mode) as f, _bar(part.name[: -len(".part")], total, have, t.progress) as bar:
            while chunk := response.read1(t.chunk_size):
                have += len(chunk)
                if have > t.max_size:
                    raise _Refused(f"the server sent more than the limit of {t.max_size} bytes", discard=True)
                f.write(chunk)
                bar.update(len(chunk))
                t.remaining()
    if total is not None and have < total:
        raise _Retryable(f"connection closed after {have} of {total} bytes")


def _check_overlap(t: _Transfer, response, start: int, overlap: int) -> None:
    """The first `overlap` bytes of a resumed body must equal the part file's last ones, or it starts over."""
    got = b""
    while len(got) < overlap and (chunk := response.read1(overlap - len(got))):
        got += chunk
        t.remaining()
    with open(t.part, "rb") as f:
        f.seek(start)
        mine = f.read(overlap)
    if len(got) < overlap:
        raise _Retryable(f"connection closed while re-reading bytes {start}-{start + overlap - 1}")
    if got != mine:
        t.part.unlink()
        raise _Retryable("the file changed on the server since the download began; starting over")


def _verify(url: str, part: Path, sha256: str | None, expected_size: int | None, why: str) -> None:
    """Size, then hash; on a mismatch the part file goes, since resuming it could only repeat the error."""
    size = _size(part)
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise UserError(f"download of {url} has {size} bytes, expected {expected_size}; removed it, rerun to retry")
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256:
            part.unlink()
            raise UserError(f"download of {url} is damaged: sha256 {actual}, expected {sha256} ({why}); removed it")


def _finished(dest: Path, sha256: str | None, expected_size: int | None) -> bool:
    """dest exists and passes the checks given (it only ever appears complete, by os.replace)."""
    if not dest.is_file():
        return False
    if expected_size is not None and dest.stat().st_size != expected_size:
        return False
    return sha256 is None or file_sha256(dest) == sha256


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _kept(part: Path) -> str:
    return f"; {part} ({_size(part)} bytes) is kept and a rerun resumes it" if part.exists() else ""


def _range_start(content_range: str | None) -> int | None:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", content_range or "")
    return int(m.group(1)) if m else None


def _range_total(content_range: str | None) -> int | None:
    """The full size from `bytes a-b/N` or `bytes */N`; None when absent or `*`."""
    m = re.search(r"/(\d+)\s*$", content_range or "")
    return int(m.group(1)) if m else None


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _bar(name: str, total: int | None, initial: int, progress: bool):
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file for one download, so two processes never append to one part file.

    flock is dropped by the kernel if the holder dies, so a crash leaves no stale lock. The file is
    removed on release; a waiter that then holds a lock on the removed file notices and retries.
    """
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


# -- the official files ------------------------------------------------------------------------------


def fetch(name: str, dest: str | Path = "checkpoints", *, progress: bool = True, sha256: str | None = None,
          url_download: Callable[..., Path] = download_url, hub_download: Callable[..., str] | None = None) -> Path:
    """One known checkpoint into dest (layout in the module docstring); returns the local file.

    `sha256` pins the file's hash (else: the shipped one, else the one its first download recorded).
    The two downloaders are parameters so tests can stand in for the network.
    """
    c = lookup(name)
    dest = Path(dest)
    if c.url is not None:
        return Path(url_download(c.url, dest / "edm" / c.filename, sha256=sha256 or c.sha256, expected_size=c.size,
                                 progress=progress))
    if hub_download is None:
        # Imported only here: it costs a quarter of a second, and only DMD2 downloads from the Hub need it.
        from huggingface_hub import hf_hub_download as hub_download
    try:
        # hf_hub_download resumes and checks the file itself, and mirrors the repo path under local_dir.
        path = Path(hub_download(repo_id=c.repo_id, filename=c.filename, local_dir=dest / "dmd2"))
    except OSError as e:  # network, missing file, gated repo: all OSError subclasses in huggingface_hub
        raise UserError(f"could not download {c.filename} from Hugging Face {c.repo_id}: {e}") from e
    if path.is_file():
        trust_file(c.record_key, path, sha256 or c.sha256, c.size)
    return path


def trust_file(key: str, path: Path, sha256: str | None = None, size: int | None = None) -> None:
    """Trust on first use for a file fetched by someone else (the Hub): check it against its record, or record it."""
    trusted, recorded_size, why = _trusted(key, sha256)
    _check_file(path, trusted, size if size is not None else recorded_size, key, why)
    _record(key, path, trusted or file_sha256(path), path.stat().st_size)


def selected(which: list[str] | None, everything: bool) -> list[str]:
    """The full names the command line asked for, in registry order, each once."""
    if everything:
        return list(KNOWN_CHECKPOINTS)
    names = {lookup(n).name for n in which} if which else set(DEFAULT_SELECTION)
    return [n for n in KNOWN_CHECKPOINTS if n in names]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    known = "\n".join(f"    {c.short:14s} {c.summary}" for c in KNOWN_CHECKPOINTS.values())
    parser.epilog = f"Checkpoints:\n\n{known}\n\n" + __doc__.split("\n", 2)[2]
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--which", nargs="+", metavar="NAME",
                   help="checkpoints to fetch, by the names below (default: edm dmd2-fid1.28)")
    g.add_argument("--all", action="store_true", help="every checkpoint below")
    parser.add_argument("--dest", type=Path, default=Path("checkpoints"), metavar="DIR",
                        help="folder to put them in (default checkpoints/)")
    parser.add_argument("--sha256", metavar="HEX", type=_hex_digest,
                        help="pin the sha256 of the one checkpoint chosen with --which (instead of trusting its "
                             "first download)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _hex_digest(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise argparse.ArgumentTypeError("a sha256 is 64 hexadecimal digits")
    return value.lower()


def run(args: argparse.Namespace) -> int:
    names = selected(args.which, args.all)
    pinned = getattr(args, "sha256", None)
    if pinned and len(names) != 1:
        raise UserError("--sha256 pins one file: choose exactly one checkpoint with --which")
    for name in names:
        path = fetch(name, args.dest, progress=not args.no_progress, sha256=pinned)
        print(f"{lookup(name).short}: {path}")
    return 0
