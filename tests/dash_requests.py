"""Callback requests as the page sends them (POST /_dash-update-component), for tests without a browser.

A plain module beside conftest.py, like nets.py: `from dash_requests import body_for, answer`.
"""

from __future__ import annotations

import json
import time

from visualizer.app import guard
from visualizer.app.ids import ID

ENDPOINT = "/_dash-update-component"


def outputs_of(key: str) -> list[dict] | dict:
    outs = [{"id": i, "property": p} for i, p in guard._outputs(key)]
    return outs if key.startswith("..") else outs[0]


def body_for(key: str, entry: dict, values: dict | None = None, changed: str | None = None) -> dict:
    """The request of callback `key` (an `app.callback_map` key): `values` by "id.property", others None."""
    values = values or {}

    def items(deps):
        return [{"id": d["id"], "property": d["property"], "value": values.get(f"{d['id']}.{d['property']}")}
                for d in deps]

    first = f"{entry['inputs'][0]['id']}.{entry['inputs'][0]['property']}"
    return {"output": key, "outputs": outputs_of(key), "inputs": items(entry["inputs"]),
            "state": items(entry["state"]), "changedPropIds": [changed or first]}


def post(client, body: dict, session: str = "tab", **args):
    """One request; `session` is the page load it comes from (Dash's endId)."""
    query = "&".join(f"{k}={v}" for k, v in {"endId": session, **args}.items())
    return client.post(f"{ENDPOINT}?{query}", data=json.dumps(body, allow_nan=True), content_type="application/json")


def poll(client, body: dict, handle: dict, session: str = "tab", timeout: float = 60) -> tuple[int, dict]:
    """Polls a background job (its first answer `handle`: cacheKey, job) until it answers, as the page does."""
    data = dict(handle)
    blank = {**body, "inputs": [{**i, "value": None} for i in body["inputs"]],
             "state": [{**s, "value": None} for s in body["state"]]}
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "a background job never answered"
        r = post(client, blank, session, cacheKey=handle["cacheKey"], job=handle["job"])
        assert r.status_code != 500, r.data[:500]
        if r.status_code == 204:
            return 204, {}
        data = r.get_json(silent=True) or {}
        if "response" in data:
            return r.status_code, data
        time.sleep(0.05)


def answer(client, body: dict, session: str = "tab") -> tuple[int, dict]:
    """Status and JSON of a callback request; a background job is polled until it has answered."""
    r = post(client, body, session)
    assert r.status_code != 500, r.data[:500]
    data = r.get_json(silent=True) or {}
    if r.status_code == 200 and "cacheKey" in data and "response" not in data:
        return poll(client, body, data, session)
    return r.status_code, data


def notice(data: dict) -> str | None:
    """The server's notice bar text in an answer, if it sets one."""
    return (data.get("sideUpdate") or {}).get(ID.notice, {}).get("children")
