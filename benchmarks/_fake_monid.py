"""A minimal, fast fake of the Monid run API for benchmarks/triggerer_scale.py (not the emulator).

Independent of airflow_monid: raw asyncio HTTP/1.1 with keep-alive, one process, so that the API is
never what limits a triggerer holding 10,000 runs. Serves ``GET /v1/runs`` (newest first, ``limit``
and ``cursor``) and ``GET /v1/runs/{id}``; for benchmarks/task_overhead.py also ``POST /v1/run`` (a sync
provider: a COMPLETED run at once, not kept) and ``POST /v1/inspect`` (a PER_CALL price and an input
schema that accepts any object with an integer ``i``). Benchmark control under ``/_ctl/``:

* ``POST /_ctl/setup`` ``{"n": N, "noise": k}``: runs ``bench-0`` .. ``bench-{N-1}`` RUNNING, plus
  ``k`` finished runs of other callers interleaved (they fill list pages, as real workspaces do);
* ``POST /_ctl/complete`` ``{"ids": [...]}``: those runs become COMPLETED now; answers the time;
* ``GET /_ctl/stats``: request counts (list, single) since setup, completion times, and ``paths``:
  requests per ``METHOD /path`` (run ids as ``{id}``) since the fake started;
* ``GET /_ctl/gaps``: per run waited for, the longest time its status went unread since the last call.

Run: python benchmarks/_fake_monid.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeMonid:
    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []  # newest first
        self.by_id: dict[str, dict[str, Any]] = {}
        self.stats = {"list": 0, "single": 0, "other": 0}
        self.completed_at: dict[str, float] = {}
        self.seen: dict[str, float] = {}  # run id -> last time its status was served
        self.max_gap: dict[str, float] = {}
        self.paths: dict[str, int] = {}  # "METHOD /path" -> requests since start (never reset)
        self.submitted = 0

    def observe(self, run_id: str, now: float) -> None:
        last = self.seen.get(run_id)
        if last is not None:
            gap = now - last
            if gap > self.max_gap.get(run_id, 0.0):
                self.max_gap[run_id] = gap
        self.seen[run_id] = now

    def setup(self, n: int, noise: int) -> dict[str, Any]:
        oldest_first: list[dict[str, Any]] = []
        base = time.time() - 5
        every = max(1, n // noise) if noise else 0
        for i in range(n):
            oldest_first.append(self._run(f"bench-{i}", "RUNNING", base + i * 0.0001))
            if every and i % every == 0:
                oldest_first.append(self._run(f"other-{i}", "COMPLETED", base + i * 0.0001))
        self.runs = list(reversed(oldest_first))
        self.by_id = {r["runId"]: r for r in self.runs}
        self.stats = {"list": 0, "single": 0, "other": 0}
        self.completed_at = {}
        self.seen, self.max_gap = {}, {}
        return {"runs": len(self.runs), "created_at": base}

    @staticmethod
    def _run(run_id: str, status: str, created: float) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1e6):06d}Z"
        return {
            "runId": run_id,
            "provider": "apify",
            "endpoint": "/bench/endpoint",
            "status": status,
            "providerResponse": {"httpStatus": 200} if status == "COMPLETED" else None,
            "cost": {"value": 0.003, "currency": "USD"},
            "createdAt": stamp,
        }

    def complete(self, ids: list[str]) -> dict[str, Any]:
        now = time.time()
        for run_id in ids:
            run = self.by_id[run_id]
            run["status"], run["providerResponse"] = "COMPLETED", {"httpStatus": 200}
            self.completed_at[run_id] = now
        return {"at": now}

    def count(self, method: str, path: str) -> None:
        if path.startswith("/_ctl/"):
            return
        if path.startswith("/v1/runs/"):
            path = "/v1/runs/{id}" + ("/stop" if path.endswith("/stop") else "")
        key = f"{method} {path}"
        self.paths[key] = self.paths.get(key, 0) + 1

    def submit(self, body: bytes) -> dict[str, Any]:
        """A sync provider's answer to ``POST /v1/run``: the finished run with its output."""
        data = json.loads(body or b"{}")
        self.submitted += 1
        now = time.time()
        run = self._run(f"sync-{self.submitted}", "COMPLETED", now)
        run.update(provider=data.get("provider"), endpoint=data.get("endpoint"), input=data.get("input"))
        run["output"] = [{"input": data.get("input"), "text": "x" * 200}]
        run["price"] = {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}
        run["resultCount"], run["completedAt"] = 1, run["createdAt"]
        return run

    @staticmethod
    def inspect(body: bytes) -> dict[str, Any]:
        data = json.loads(body or b"{}")
        schema = {"type": "object", "properties": {"i": {"type": "integer"}}, "required": ["i"]}
        return {
            "provider": data.get("provider"),
            "endpoint": data.get("endpoint"),
            "price": {"type": "PER_CALL", "amount": {"value": 0.003, "currency": "USD"}},
            "input": {"body": schema, "bodyType": "json"},
        }

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        path = url.path
        self.count(method, path)
        if path == "/v1/run" and method == "POST":
            return 200, self.submit(body)
        if path == "/v1/inspect" and method == "POST":
            return 200, self.inspect(body)
        if path == "/v1/runs" and method == "GET":
            self.stats["list"] += 1
            query = parse_qs(url.query)
            limit = min(100, int(query.get("limit", ["10"])[0]))
            start = int(query.get("cursor", ["0"])[0] or 0)
            page = self.runs[start : start + limit]
            now = time.time()
            for run in page:
                self.observe(run["runId"], now)
            more = start + limit < len(self.runs)
            return 200, {"items": page, "cursor": str(start + limit) if more else None}
        if path.startswith("/v1/runs/") and method == "GET":
            self.stats["single"] += 1
            run = self.by_id.get(path[len("/v1/runs/") :])
            if run:
                self.observe(run["runId"], time.time())
            return (200, {**run, "output": [{"text": "x" * 200}] * 20}) if run else (404, {"message": "Run not found"})
        if path == "/_ctl/setup":
            data = json.loads(body)
            return 200, self.setup(int(data["n"]), int(data.get("noise", 0)))
        if path == "/_ctl/complete":
            return 200, self.complete(list(json.loads(body)["ids"]))
        if path == "/_ctl/gaps":  # GET: the largest gap between two reads of each run since the last call
            now = time.time()
            running = [r["runId"] for r in self.runs if r["runId"].startswith("bench-")]
            gaps = [max(self.max_gap.get(i, 0.0), now - self.seen.get(i, 0.0)) for i in running]
            self.max_gap = {}
            return 200, {"gaps": gaps}
        if path == "/_ctl/stats":
            return 200, {**self.stats, "completed_at": self.completed_at, "paths": self.paths}
        self.stats["other"] += 1
        return 404, {"message": "Not found"}


async def serve(port: int) -> None:
    api = FakeMonid()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == "content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                status, data = api.handle(method, target, body)
                payload = json.dumps(data).encode()
                head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(payload)}\r\n\r\n"
                writer.write(head.encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
