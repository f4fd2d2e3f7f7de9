"""Check an installed wheel the way a user meets it: run with the Python of a fresh virtual environment
into which scripts/test installed Airflow and the built wheel (not the checkout).

Follows the Getting started page (docs/getting-started.md) step by step:

1. ``airflow_monid`` is imported from that environment's site-packages, at the wheel's version;
2. ``airflow db migrate`` in a throw-away ``AIRFLOW_HOME``;
3. ``airflow providers list`` shows ``airflow-provider-monid`` at that version;
4. ``python -m airflow_monid.testing --port 0`` (the emulator shipped in the wheel) and
   ``AIRFLOW_CONN_MONID_DEFAULT`` pointing at it;
5. ``example_dags/monid_async_tweets.py`` copied into the DAGs folder and run with ``dag.test()``: the
   DAG run succeeds, the count task returns 3 tweets, and the emulator saw one paid ``POST /v1/run``.

Usage: ``.venv-wheel/bin/python scripts/wheel_check.py VERSION``. Prints each step; exits non-zero on
the first failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_DAG = ROOT / "example_dags" / "monid_async_tweets.py"
BIN = Path(sys.executable).parent


class CheckFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"  - {text}", flush=True)


def run(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["AIRFLOW_HOME"])
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def main(expected_version: str) -> None:
    import airflow_monid

    where = Path(airflow_monid.__file__).resolve()
    if ROOT / "airflow_monid" in where.parents:
        raise CheckFailed(f"airflow_monid was imported from the checkout ({where}), not from the wheel")
    if airflow_monid.__version__ != expected_version:
        raise CheckFailed(f"installed version {airflow_monid.__version__}, expected {expected_version}")
    step(f"airflow_monid {airflow_monid.__version__} from {where.parent}")

    home = Path(tempfile.mkdtemp(prefix="monid-wheel-check-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": "",  # nothing from the checkout
    }
    emulator = None
    try:
        run(str(BIN / "airflow"), "db", "migrate", env=env)
        step("airflow db migrate")

        providers = json.loads(run(str(BIN / "airflow"), "providers", "list", "-o", "json", env=env))
        ours = [p for p in providers if p.get("package_name") == "airflow-provider-monid"]
        if not ours or ours[0].get("version") != expected_version:
            raise CheckFailed(f"airflow providers list does not show airflow-provider-monid {expected_version}: {ours}")
        step(f"airflow providers list: airflow-provider-monid {ours[0]['version']}")

        emulator = subprocess.Popen(
            [sys.executable, "-m", "airflow_monid.testing", "--port", "0"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert emulator.stdout is not None
        line = emulator.stdout.readline().strip()
        if not line.startswith("Emulator listening on "):
            raise CheckFailed(f"the emulator did not start: {line!r}")
        url = line.removeprefix("Emulator listening on ")
        env["AIRFLOW_CONN_MONID_DEFAULT"] = json.dumps({"conn_type": "monid", "host": url, "password": "any-key"})
        step(f"python -m airflow_monid.testing: {url}")

        dags = home / "dags"
        dags.mkdir()
        dag_file = dags / FIRST_DAG.name
        shutil.copy(FIRST_DAG, dag_file)
        # What `python airflow-home/dags/monid_async_tweets.py` does, plus reading the outcome.
        probe = (
            "import runpy\n"
            f"dag_run = runpy.run_path({str(dag_file)!r})['dag_object'].test()\n"
            "print('RESULT', dag_run.state)\n"
        )
        started = time.monotonic()
        out = run(sys.executable, "-c", probe, env=env)
        result = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if result != ["RESULT success"] or "Monid returned 3 tweets" not in out:
            raise CheckFailed(f"the first DAG did not succeed with 3 tweets: {result}\n{out[-3000:]}")
        with urllib.request.urlopen(f"{url}/_emulator/requests") as answer:
            requests = json.load(answer)
        items = requests.get("requests", requests) if isinstance(requests, dict) else requests
        paid = [r for r in items if r.get("method") == "POST" and r.get("path") == "/v1/run"]
        if len(paid) != 1:
            raise CheckFailed(f"expected one POST /v1/run, the emulator saw {len(paid)}")
        step(f"{FIRST_DAG.name} with dag.test(): success, 3 tweets, one paid run ({time.monotonic() - started:.1f} s)")
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        main(sys.argv[1])
    except CheckFailed as exc:
        print(f"wheel check FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    print("wheel check passed")
