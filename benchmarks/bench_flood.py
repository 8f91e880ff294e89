"""Click latency while the server is flooded with teacher runs (issue 14), against a real app over HTTP.

Starts the app (the embedded demo by default: real models on the CPU) as a separate process on
127.0.0.1, then, for each round: clicks a new seed on the idle server (the first-look callback),
posts `--flood` requests to the teacher's background callback as fast as it can (each from its own
page load, as a script would forge them, or all from one with `--one-session`), and at once clicks
another new seed from another page, timing until each click's answer arrives. The request bodies
are built from the server's own `/_dash-dependencies`, so the script follows the app's callbacks.

    python benchmarks/bench_flood.py [--flood 20] [--rounds 5] [--timeout 60] [--out benchmarks/out/bench_flood.json]
    python benchmarks/bench_flood.py --source /tmp/old-checkout     # the same against another checkout
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, base: str, timeout: float):
        self.base, self.timeout = base, timeout
        with urllib.request.urlopen(base + "/_dash-dependencies", timeout=timeout) as r:
            self.callbacks = {c["output"]: c for c in json.loads(r.read())}

    def body(self, prefix: str, values: dict, changed: str) -> dict:
        key = next(k for k in self.callbacks if k.startswith(prefix))
        c = self.callbacks[key]
        parts = key[2:-2].split("...") if key.startswith("..") else [key]
        outs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in parts]

        def items(deps):
            return [{**d, "value": values.get(f"{d['id']}.{d['property']}")} for d in deps]

        return {"output": key, "outputs": outs if key.startswith("..") else outs[0], "inputs": items(c["inputs"]),
                "state": items(c.get("state", [])), "changedPropIds": [changed]}

    def post(self, body: dict, session: str, timeout: float | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.base}/_dash-update-component?endId={session}",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, {}


def click(client: Client, seed: int, session: str, timeout: float) -> float | None:
    """Seconds until a new-seed click's first look answers (None: not within `timeout`)."""
    body = client.body("..first-ready.data", {"clicked.data": {"seed": seed, "class_label": seed % 10},
                                              "reduction.value": "l2"}, "clicked.data")
    start = time.perf_counter()
    try:
        status, data = client.post(body, session, timeout)
    except (TimeoutError, urllib.error.URLError, OSError):
        return None
    assert status == 200 and data.get("response", {}).get("first-ready", {}).get("data", {}).get("seed") == seed, \
        (status, str(data)[:500])
    return time.perf_counter() - start


def flood(client: Client, n: int, base_seed: int, one_session: bool) -> float:
    """Posts n teacher runs as fast as possible (threads, like a script); returns the seconds it took."""
    first = client.body("..first-ready.data", {"clicked.data": {"seed": base_seed, "class_label": 0},
                                               "reduction.value": "l2"}, "clicked.data")
    status, data = client.post(first, "setup")          # a valid first-ready value, as the page would hold it
    ready = data["response"]["first-ready"]["data"]
    bodies = [client.body("trajectory-done.data", {"first-ready.data": {**ready, "seed": base_seed + i}},
                          "first-ready.data") for i in range(n)]
    start = time.perf_counter()
    threads = [threading.Thread(target=client.post, args=(b, "flooder" if one_session else f"flood-{base_seed}-{i}"))
               for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _seconds(value: float | None, timeout: float) -> str:
    return f"{value:.2f} s" if value is not None else f"more than {timeout:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=20, help="teacher runs posted per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drain", type=float, default=8.0, help="seconds between rounds (the queue drains)")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on a click after this long")
    parser.add_argument("--one-session", action="store_true", help="the flood comes from one page load")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose app is served")
    parser.add_argument("--app-args", default="", help="options for the app (default: the embedded demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_flood.json")
    args = parser.parse_args(argv)

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(args.source), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "visualizer", "app", "--port", str(port), "--device", "cpu", *args.app_args.split()]
    server = subprocess.Popen(cmd, cwd=args.source, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                client = Client(base, args.timeout)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the app did not start:\n{server.stdout.read()}") from None
                time.sleep(0.5)
        for i in range(3):
            click(client, 1 + i, "warm-up", args.timeout)
        idle, rounds = [], []
        for r in range(args.rounds):                        # an idle click, then a flood and a click at once
            idle.append(click(client, 50_000 + r, "viewer", args.timeout))
            sent = flood(client, args.flood, 100_000 + 1000 * r, args.one_session)
            latency = click(client, 60_000 + r, "viewer", args.timeout)
            rounds.append({"flood_s": sent, "click_s": latency})
            print(f"round {r}: idle click {_seconds(idle[-1], args.timeout)}; {args.flood} teacher runs posted in "
                  f"{sent:.2f} s; a new-seed click then answered in {_seconds(latency, args.timeout)}", flush=True)
            time.sleep(args.drain)                         # let the admitted runs drain before the next round
    finally:
        server.terminate()
        server.wait(20)
    answered = [x["click_s"] for x in rounds if x["click_s"] is not None]
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["python", "benchmarks/bench_flood.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "source": str(args.source), "flood": args.flood,
        "one_session": args.one_session, "idle_click_s": idle, "rounds": rounds,
        "idle_median_s": statistics.median([x for x in idle if x is not None] or [math.nan]),
        "flood_median_click_s": statistics.median(answered) if answered else None,
        "flood_max_click_s": max(answered) if len(answered) == len(rounds) else None,
        "unanswered": len(rounds) - len(answered),
    }
    print(f"idle click median {result['idle_median_s']:.2f} s; under a flood of {args.flood}: median "
          + (f"{result['flood_median_click_s']:.2f} s" if answered else "-")
          + (f", max {result['flood_max_click_s']:.2f} s" if result["flood_max_click_s"] is not None else "")
          + (f", {result['unanswered']} of {len(rounds)} not answered within {args.timeout:.0f} s"
             if result["unanswered"] else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
