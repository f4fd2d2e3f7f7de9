"""Spend API speed: 100,000 recorded runs over 90 days, each ``group_by`` side by side with a bare
``SELECT count(*)`` over the same rows, in the same run, on SQLite and on PostgreSQL.

The records are XCom rows exactly as the provider writes them (``build_record``), in an ``xcom``
table with Airflow's own columns and indexes (foreign keys left out: no DAG runs or task instances
are needed to measure the aggregation), next to as many other XCom rows (``return_value``, ``run``).
What is timed is what ``GET /monid/api/v1/spend`` runs (``spend_report``, reconciliation off: it is
network time, cached 60 s) and what the page runs (``page_data``, four groupings and the top ten).
No test asserts these figures.

    .venv/bin/python benchmarks/spend_api.py                  # SQLite and PostgreSQL (if installed)
    .venv/bin/python benchmarks/spend_api.py --runs 20000 --only sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="spend-bench-home-"))

from sqlalchemy import Column, Index, MetaData, Table, create_engine, insert
from sqlalchemy.orm import Session

DAYS = 90
ENDPOINTS = [
    ("apify", "/apidojo/tweet-scraper", 0.0004, "PER_RESULT"),
    ("pdl", "/person/enrich", 0.003, "PER_CALL"),
    ("pdl", "/company/enrich", 0.01, "PER_CALL"),
]


def xcom_table(metadata: MetaData) -> Table:
    """Airflow's ``xcom`` table (columns and indexes of the installed Airflow), without foreign keys."""
    from airflow.models.xcom import XComModel

    src = XComModel.__table__
    table = Table(
        "xcom", metadata, *[Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in src.columns]
    )
    for index in src.indexes:
        Index(index.name, *[table.c[c.name] for c in index.columns])
    return table


def records(n: int, end: date, seed: int = 7) -> Iterator[dict[str, Any]]:
    from airflow_monid._spend.records import build_record, spend_key

    rng = random.Random(seed)
    for i in range(n):
        dag = f"dag_{i % 40:02d}"
        task = f"task_{(i // 40) % 6}"
        provider, endpoint, amount, kind = ENDPOINTS[i % len(ENDPOINTS)]
        created = datetime.combine(end, datetime.min.time(), UTC) - timedelta(seconds=rng.uniform(0, DAYS * 86400))
        status = "COMPLETED" if rng.random() > 0.05 else "FAILED"
        run = {
            "runId": f"R{i:09d}",
            "provider": provider,
            "endpoint": endpoint,
            "status": status,
            "providerResponse": {"httpStatus": 200 if rng.random() > 0.03 else 404},
            "price": {"type": kind, "amount": {"value": amount, "currency": "USD"}},
            "createdAt": created.isoformat(),
            "resultCount": 10,
        }
        if rng.random() > 0.02:  # a few runs report no cost: estimates
            run["cost"] = {
                "value": amount * (10 if kind == "PER_RESULT" else 1) if status == "COMPLETED" else 0.0,
                "currency": "USD",
            }
        record = build_record(run, conn_id="monid_default", output=[1], try_number=1)
        dag_run = i // 240 + 1
        base = {
            "dag_run_id": dag_run,
            "task_id": task,
            "map_index": i,
            "dag_id": dag,
            "run_id": f"scheduled__{dag_run}",
            "timestamp": created,
            "dag_result": False,
        }
        yield {**base, "key": spend_key(record["monid_run_id"]), "value": record}
        yield {**base, "key": "return_value", "value": {"items": [1, 2, 3]}}  # rows the key range must skip


def load(engine: Any, n: int, end: date) -> float:
    metadata = MetaData()
    table = xcom_table(metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in records(n, end):
            batch.append(row)
            if len(batch) >= 5000:
                conn.execute(insert(table), batch)
                batch = []
        if batch:
            conn.execute(insert(table), batch)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE xcom")
        else:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(engine: Any, label: str, n: int, repeat: int) -> None:
    from airflow_monid._spend.query import SpendFilter, count_records
    from airflow_monid._spend.report import page_data, spend_report

    end = datetime.now(UTC).date()
    loaded = load(engine, n, end)
    flt = SpendFilter(end - timedelta(days=DAYS - 1), end)
    default = SpendFilter(end - timedelta(days=29), end)
    print(
        f"\n{label}: {n:,} spend records + {n:,} other XCom rows over {DAYS} days (loaded in {loaded:.1f} s); "
        f"median of {repeat}"
    )
    print(f"{'query':<34}{'rows':>9}{'seconds':>10}{'vs count(*)':>13}")
    with Session(engine) as session:
        spend_report(session, flt, "dag", readable=None, may_see_workspace=lambda c: True, bill=None)  # warm-up
        base, count = timed(lambda: count_records(session, flt), repeat)
        print(f"{'SELECT count(*) (90 days)':<34}{count:>9,}{base:>10.3f}{'1.0x':>13}")
        for group_by in ("dag", "task", "endpoint", "day"):
            secs, rep = timed(
                lambda g=group_by: spend_report(
                    session, flt, g, readable=None, may_see_workspace=lambda c: True, bill=None
                ),
                repeat,
            )
            assert rep["runs"] == count, (rep["runs"], count)
            print(f"{'API group_by=' + group_by + ' (90 days)':<34}{rep['runs']:>9,}{secs:>10.3f}{secs / base:>12.1f}x")
        readable = {f"dag_{i:02d}" for i in range(0, 40, 2)}
        secs, rep = timed(
            lambda: spend_report(session, flt, "dag", readable=readable, may_see_workspace=lambda c: True, bill=None),
            repeat,
        )
        print(f"{'API group_by=dag, 20 of 40 DAGs':<34}{rep['runs']:>9,}{secs:>10.3f}{secs / base:>12.1f}x")
        base30, count30 = timed(lambda: count_records(session, default), repeat)
        print(f"{'SELECT count(*) (30 days)':<34}{count30:>9,}{base30:>10.3f}{'1.0x':>13}")
        secs, data = timed(
            lambda: page_data(session, default, readable=None, may_see_workspace=lambda c: True, bill=None), repeat
        )
        print(
            f"{'page (4 groupings + top 10, 30 d)':<34}{data['report']['runs']:>9,}{secs:>10.3f}{secs / base30:>12.1f}x"
        )


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    try:
        import psycopg2
    except ImportError:
        found = []
    if not found:
        yield None
        return
    bin_dir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="spend-bench-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        info = pwd.getpwnam(user)
        os.chown(root, info.pw_uid, info.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "bench", "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
        user=user,
        cwd=root,
    )
    proc = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(root / "data"),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        user=user,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import psycopg2

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="bench", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # a benchmark's start-up wait, not a test
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE bench")
        conn.close()
        yield f"postgresql+psycopg2://bench@127.0.0.1:{port}/bench"
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    import airflow

    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.only in (None, "sqlite"):
        folder = Path(tempfile.mkdtemp(prefix="spend-bench-sqlite-"))
        try:
            measure(create_engine(f"sqlite:///{folder / 'bench.db'}"), "SQLite", args.runs, args.repeat)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if args.only in (None, "postgresql"):
        with postgres() as url:
            if url is None:
                print("\nPostgreSQL: skipped (no /usr/lib/postgresql/*/bin/initdb or no psycopg2)")
            else:
                engine = create_engine(url)
                measure(
                    engine,
                    "PostgreSQL " + engine.connect().exec_driver_sql("show server_version").scalar(),
                    args.runs,
                    args.repeat,
                )
                engine.dispose()


if __name__ == "__main__":
    main()
