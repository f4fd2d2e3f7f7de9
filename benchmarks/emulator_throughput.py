"""Throughput of the emulator for the hottest call a poller makes: GET /v1/runs/{id} on a terminal run.

Run: .venv/bin/python benchmarks/emulator_throughput.py [--seconds 3] [--threads 8]
Prints figures only; the emulator is a test fixture, so this guards against it becoming the bottleneck.
Client and server share one process (and GIL), as in the test suite; httpx's own per-request cost is
usually the limit, so a third figure uses bare sockets to show the server's ceiling.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable

import httpx

from airflow_monid.testing import Emulator

KEY = "bench-key"


def _hammer(client: httpx.Client, path: str, stop_at: float, counts: list[int], slot: int) -> None:
    done = 0
    while time.perf_counter() < stop_at:
        resp = client.get(path)
        if resp.status_code != 200:
            raise RuntimeError(f"unexpected status {resp.status_code}")
        done += 1
    counts[slot] = done


def _raw_hammer(url: str, path: str, stop_at: float, counts: list[int], slot: int) -> None:
    """Minimal keep-alive HTTP/1.1 client: shows the server's ceiling without httpx's per-request cost."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
    done = 0
    with socket.create_connection((host, int(port))) as sock, sock.makefile("rb") as stream:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.perf_counter() < stop_at:
            sock.sendall(request)
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            stream.read(length)
            done += 1
    counts[slot] = done


def measure(client: httpx.Client | str, path: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    started = time.perf_counter()
    stop_at = started + seconds
    target: Callable[..., None] = _raw_hammer if isinstance(client, str) else _hammer
    workers = [threading.Thread(target=target, args=(client, path, stop_at, counts, i)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    with Emulator(monid_api_key=KEY) as emu:
        limits = httpx.Limits(max_connections=args.threads, max_keepalive_connections=args.threads)
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=emu.url, headers=headers, limits=limits) as client:
            run = client.post(
                "/v1/run", json={"provider": "pdl", "endpoint": "/person/enrich", "input": {"email": "a@b.c"}}
            )
            path = f"/v1/runs/{run.json()['runId']}"
            for _ in range(50):  # warm up connections and code paths
                client.get(path)
            single = measure(client, path, 1, args.seconds)
            print(f"GET {path}: 1 thread, 1 httpx.Client: {single:,.0f} req/s", flush=True)
            multi = measure(client, path, args.threads, args.seconds)
            print(f"GET {path}: {args.threads} threads, shared httpx.Client: {multi:,.0f} req/s", flush=True)
        raw = measure(emu.url, path, args.threads, args.seconds)
        print(f"GET {path}: {args.threads} threads, raw keep-alive sockets: {raw:,.0f} req/s", flush=True)
        print(f"requests logged: {emu.count('GET', path=path):,}")


if __name__ == "__main__":
    main()
