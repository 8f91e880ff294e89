"""`python -m visualizer download`: fetch the official EDM and DMD2 ImageNet-64 checkpoints, once.

Examples:

    python -m visualizer download                       # edm + dmd2-fid1.28 into checkpoints/
    python -m visualizer download --all --dest /data/ckpt
    python -m visualizer download --which dmd2-fid1.51 dmd2-fid2.61

Layout under --dest (default checkpoints/):

    edm/edm-imagenet-64x64-cond-adm.pkl                          the EDM teacher (NVIDIA CDN)
    dmd2/model/imagenet/<run>/pytorch_model.bin                  a DMD2 student (Hugging Face tianweiy/DMD2)
    dmd2/.cache/huggingface/                                     huggingface_hub's own bookkeeping

Either the .bin or its <run>/ folder can be passed as --student. Rerunning skips finished files and
resumes interrupted ones. Checkpoints given by URL elsewhere (e.g. --teacher https://...) are cached
in $VISUALIZER_CACHE, else $XDG_CACHE_HOME/visualizer, else ~/.cache/visualizer.
"""

from __future__ import annotations

import argparse
import http.client
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


@dataclass(frozen=True)
class KnownCheckpoint:
    """An official file: a plain URL (fetched by download_url) or a Hugging Face repo file (by huggingface_hub).

    size and sha256 stay None until someone has checked them against the real file; a guessed hash
    would only turn a good download into an error.
    """

    name: str
    summary: str
    filename: str                    # URL downloads: the local file name; Hub downloads: the path in the repo
    url: str | None = None
    repo_id: str | None = None
    size: int | None = None
    sha256: str | None = None

    @property
    def short(self) -> str:
        """The name the command line takes: edm, dmd2-fid1.28, ..."""
        return self.name.replace("-imagenet-64", "")


def _registry() -> dict[str, KnownCheckpoint]:
    edm_file = "edm-imagenet-64x64-cond-adm.pkl"
    items = [KnownCheckpoint("edm-imagenet-64", "EDM teacher, ImageNet 64x64 class-conditional (ADM UNet)",
                             edm_file, url=f"https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/{edm_file}")]
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

    A URL of an official file whose sha256 is recorded comes back only once the file matches it
    (download_url checks), so that sha256 is the file's.
    """
    if is_url(path_or_url):
        known = known_url(path_or_url)
        return download_url(str(path_or_url), sha256=known and known.sha256, expected_size=known and known.size)
    path = Path(path_or_url).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    return path


# -- one URL, resumable ------------------------------------------------------------------------------


class _Retryable(Exception):
    """A transfer that stopped early or a server hiccup: worth another attempt from where it stopped."""


_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def download_url(url: str, dest: str | Path | None = None, *, sha256: str | None = None,
                 expected_size: int | None = None, progress: bool = True, chunk_size: int = 1 << 20,
                 timeout: float = 60, retries: int = 3, retry_wait: float = 1.0) -> Path:
    """Fetch url to dest once: an existing dest that passes the checks costs no request.

    Bytes go to `<dest>.part`, which a later attempt (an automatic retry, up to `retries`, or a rerun)
    continues with a Range request. Only a complete file whose size and sha256 check out is moved to
    dest, atomically; a wrong hash removes the part file, so a bad download never looks finished.
    """
    if dest is None:
        name = Path(urllib.parse.urlparse(url).path).name
        if not name:
            raise UserError(f"cannot name a file after {url}; give a destination")
        dest = cache_dir() / name
    dest = Path(dest)
    sha256 = sha256.lower() if sha256 else None
    if _finished(dest, sha256, expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with _locked(dest.with_name(dest.name + ".lock")):
        if _finished(dest, sha256, expected_size):  # another process finished it while we waited
            return dest
        for attempt in range(retries + 1):
            try:
                _fetch_part(url, part, expected_size, progress=progress, chunk_size=chunk_size, timeout=timeout)
                break
            except urllib.error.HTTPError as e:
                if e.code not in _RETRY_STATUS or attempt == retries:
                    raise UserError(f"could not download {url}: HTTP {e.code} {e.reason}") from e
            except (_Retryable, urllib.error.URLError, http.client.HTTPException, OSError) as e:
                if attempt == retries:
                    kept = f"; {part} ({_size(part)} bytes) is kept and a rerun resumes it" if part.exists() else ""
                    raise UserError(f"could not download {url}: {_reason(e)}{kept}") from e
            time.sleep(min(retry_wait * 2**attempt, 30))
        _verify(url, part, sha256, expected_size)
        os.replace(part, dest)
    return dest


def _fetch_part(url: str, part: Path, expected_size: int | None, *, progress: bool, chunk_size: int,
                timeout: float) -> None:
    """One request that brings part to the full file, or raises; part keeps whatever arrived."""
    have = _size(part)
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size:
        return  # complete from an earlier run; the caller verifies it
    request = urllib.request.Request(url, headers={"User-Agent": "visualizer-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        # Nothing left to send from byte `have`: either part is complete or it is longer than the file.
        total = _range_total(e.headers.get("Content-Range"))
        e.close()
        if total is not None and have == total:
            return
        part.unlink()
        raise _Retryable(f"server refused to resume from byte {have}; starting over") from None
    with response:
        if have and response.status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Retryable(f"server resumed from byte {start}, not {have}; starting over")
            total = _range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: a fresh download, or a server that ignores Range; either way the body is the whole file
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        total = total if total is not None else expected_size
        with open(part, mode) as f, _bar(part.name[: -len(".part")], total, have, progress) as bar:
            while chunk := response.read(chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and _size(part) < total:
        raise _Retryable(f"connection closed after {_size(part)} of {total} bytes")


def _verify(url: str, part: Path, sha256: str | None, expected_size: int | None) -> None:
    """Size, then hash; on a mismatch the part file goes, since resuming it could only repeat the error."""
    size = _size(part)
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise UserError(f"download of {url} has {size} bytes, expected {expected_size}; removed it, rerun to retry")
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256:
            part.unlink()
            raise UserError(f"download of {url} is damaged: sha256 {actual}, expected {sha256}; removed it")


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


def fetch(name: str, dest: str | Path = "checkpoints", *, progress: bool = True,
          url_download: Callable[..., Path] = download_url, hub_download: Callable[..., str] | None = None) -> Path:
    """One known checkpoint into dest (layout in the module docstring); returns the local file.

    The two downloaders are parameters so tests can stand in for the network.
    """
    c = lookup(name)
    dest = Path(dest)
    if c.url is not None:
        return Path(url_download(c.url, dest / "edm" / c.filename, sha256=c.sha256, expected_size=c.size,
                                 progress=progress))
    if hub_download is None:
        # Imported only here: it costs a quarter of a second, and only DMD2 downloads from the Hub need it.
        from huggingface_hub import hf_hub_download as hub_download
    try:
        # hf_hub_download resumes and checks the file itself, and mirrors the repo path under local_dir.
        return Path(hub_download(repo_id=c.repo_id, filename=c.filename, local_dir=dest / "dmd2"))
    except OSError as e:  # network, missing file, gated repo: all OSError subclasses in huggingface_hub
        raise UserError(f"could not download {c.filename} from Hugging Face {c.repo_id}: {e}") from e


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    for name in selected(args.which, args.all):
        path = fetch(name, args.dest, progress=not args.no_progress)
        print(f"{lookup(name).short}: {path}")
    return 0
