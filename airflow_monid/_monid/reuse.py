"""``reuse_results``: a successful run's output kept in object storage and returned instead of paying again.

The key of an entry is a digest of the connection's base URL, the provider, the endpoint and the
canonical input (key order, and ``1`` versus ``1.0``, do not matter). Never the API key, the connection
id or anything secret: two connections with different keys to the same API share entries, as they would
get the same answer. An entry is one JSON object at ``<path>/<first 2 digest chars>/<digest>.json``.

A lookup that cannot read an entry (missing, unreadable, corrupted, for another key, too old) is a miss
and the task pays as it would without reuse; a store that fails is a warning. Neither fails a task.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

ENTRY_VERSION = 1


def _config_error(message: str) -> Exception:
    from airflow_monid.exceptions import ConfigError

    return ConfigError(message)


@dataclass(frozen=True)
class ReusePolicy:
    """Reuse the output of an earlier successful run with the same input instead of paying again.

    ``MonidRunOperator(reuse_results=ReusePolicy("s3://aws_default@bucket/monid-cache", ttl=timedelta(days=1)))``
    (also ``@task.monid``). Before paying, the task looks for a run with the same connection base URL,
    provider, endpoint and input that succeeded within ``ttl``; a hit returns its output with no request to
    Monid. A miss pays as usual and stores the output after delivering it (README "Reusing paid results").

    :param path: any ``ObjectStoragePath`` URL of a directory (``s3://conn_id@bucket/prefix``,
        ``gs://...``, ``file:///data/monid-cache``); entries are JSON files under it.
    :param ttl: how long a result may be reused, counted from when its run completed (a ``timedelta``
        or seconds; > 0, finite).
    :param refresh: pay for a new run even when an entry would be reused, and replace the entry.
    """

    path: str
    ttl: timedelta = timedelta(days=1)
    refresh: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or "://" not in self.path:
            raise _config_error(
                f"ReusePolicy.path must be an object storage URL such as s3://aws_default@bucket/monid-cache or "
                f"file:///data/monid-cache, got {self.path!r}."
            )
        ttl: Any = self.ttl
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise _config_error(
                f"ReusePolicy.ttl must be a positive finite timedelta or number of seconds, got {ttl!r}."
            )
        object.__setattr__(self, "ttl", ttl if isinstance(ttl, timedelta) else timedelta(seconds=float(ttl)))
        if not isinstance(self.refresh, bool):
            raise _config_error(f"ReusePolicy.refresh must be True or False, got {self.refresh!r}.")


def canonical(value: Any) -> Any:
    """``value`` with every whole float written as an int (``1.0`` is ``1``); booleans stay booleans."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def reuse_key(base_url: str, provider: str, endpoint: str, payload: Mapping[str, Any]) -> str:
    """The entry's digest: base URL, provider, endpoint and canonical input (sorted keys, no spaces)."""
    text = json.dumps(
        [base_url.rstrip("/"), provider, endpoint, canonical(payload)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def entry_url(policy: ReusePolicy, key: str) -> str:
    return f"{policy.path.rstrip('/')}/{key[:2]}/{key}.json"


@dataclass(frozen=True)
class Hit:
    """A reusable entry: the output and the run that paid for it."""

    url: str
    run_id: str
    output: Any
    completed_at: float
    cost: float | None
    currency: str
    provider: str
    endpoint: str


def _path(url: str) -> Any:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def lookup(policy: ReusePolicy, key: str, *, log: Any, now: float | None = None) -> Hit | None:
    """The entry for ``key`` when it is readable, for this key, and younger than ``ttl``; else ``None``
    (logged: missing at INFO, corrupted or unreadable as a warning)."""
    url = entry_url(policy, key)
    now = time.time() if now is None else now
    try:
        path = _path(url)
        if not path.exists():
            log.info("reuse_results: no stored result for this input (%s): paying for a new run.", url)
            return None
        with path.open("rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except Exception as exc:
        log.warning(
            "reuse_results: the stored result at %s could not be read (%s: %s): paying for a new run, which "
            "replaces it.",
            url,
            type(exc).__name__,
            exc,
        )
        return None
    completed, run_id = (data.get("completed_at"), data.get("run_id")) if isinstance(data, dict) else (None, None)
    valid = (
        isinstance(data, dict)
        and data.get("v") == ENTRY_VERSION
        and data.get("key") == key
        and isinstance(run_id, str)
        and run_id
        and "output" in data
        and isinstance(completed, int | float)
        and not isinstance(completed, bool)
        and math.isfinite(completed)
    )
    if not valid:
        log.warning("reuse_results: the stored result at %s is not a valid entry: paying for a new run.", url)
        return None
    age = now - float(completed)  # type: ignore[arg-type]
    if age > policy.ttl.total_seconds():
        log.info(
            "reuse_results: the stored result of Monid run %s is %.0f s old, older than ttl %s: paying for a new run.",
            run_id,
            age,
            policy.ttl,
        )
        return None
    cost = data.get("cost")
    return Hit(
        url=url,
        run_id=str(run_id),
        output=data["output"],
        completed_at=float(completed),  # type: ignore[arg-type]
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        currency=str(data.get("currency") or "USD"),
        provider=str(data.get("provider") or ""),
        endpoint=str(data.get("endpoint") or ""),
    )


def store(
    policy: ReusePolicy,
    key: str,
    *,
    run: Mapping[str, Any],
    output: Any,
    cost: Mapping[str, Any] | None,
    log: Any,
    now: float | None = None,
) -> bool:
    """Write the entry of a successful run (replacing an older one). A failure is a warning: the task
    already delivered, and the next run with this input simply pays."""
    from airflow_monid.models._base import parse_time

    url = entry_url(policy, key)
    completed = parse_time(run.get("completedAt") or run.get("finishedAt"))
    when = completed.timestamp() if completed is not None else (time.time() if now is None else now)
    entry = {
        "v": ENTRY_VERSION,
        "key": key,
        "run_id": str(run.get("runId") or run.get("id") or ""),
        "provider": str(run.get("provider") or ""),
        "endpoint": str(run.get("endpoint") or ""),
        "completed_at": when,
        "cost": cost.get("value") if cost else None,
        "currency": str(cost.get("currency") if cost else "USD"),
        "output": output,
    }
    try:
        body = json.dumps(entry, ensure_ascii=False, allow_nan=False).encode()
        path = _path(url)
        if path.protocol in ("file", "local"):
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.write(body)
    except Exception as exc:
        log.warning(
            "reuse_results: storing the result of Monid run %s at %s failed (%s: %s). The task's result is not "
            "affected; the next run with this input pays again.",
            entry["run_id"],
            url,
            type(exc).__name__,
            exc,
        )
        return False
    log.info("reuse_results: stored the result of Monid run %s at %s.", entry["run_id"], url)
    return True
