"""The soak's seeded plan: workload waves and the fault schedule, a pure function of (seed, minutes, rate).

The same seed gives the same list of events (same offsets, same kinds, same targets, same workload):
``digest()`` prints a hash of it, so two runs can be compared. Only *when* an event really happens
can differ (the driver runs events in order and a process restart blocks it for seconds): the driver
reports the largest delay between an event's planned and actual time.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

WAVE_EVERY = 20.0  # seconds between workload waves

#: endpoint kinds: (mode, what the emulator does); async runs end 4 s after submission
ASYNC_KINDS: dict[str, dict[str, Any]] = {
    "ok": {},
    "p404": {"provider_status": 404},
    "p503": {"provider_status": 503},
    "failed": {"final_status": "FAILED", "reason": "Emulated provider crash"},
    "stopped": {"final_status": "STOPPED", "reason": "Stopped by the workspace"},
    "blocked": {"final_status": "BLOCKED", "reason": "Workspace budget exhausted"},
    "timedout": {"final_status": "TIMED_OUT", "reason": "Provider took too long"},
}
SYNC_KINDS = ("ok", "p404", "failed", "blocked", "timedout")
#: weights: most tasks succeed, every outcome of the table appears
KIND_WEIGHTS = {"ok": 10, "p404": 1, "p404ok": 1, "p503": 1, "failed": 1, "stopped": 1, "blocked": 1, "timedout": 1}

PATHS = (
    "sync",
    "deferrable",
    "worker_poll",
    "submit",
    "taskflow",
    "output_path",
    "exa_trigger",
    "exa_sensor",
    "timeout",
)
DAG_OF = {
    "sync": "soak_sync",
    "deferrable": "soak_deferrable",
    "worker_poll": "soak_worker_poll",
    "submit": "soak_submit_sensor",
    "taskflow": "soak_taskflow",
    "output_path": "soak_output_path",
    "exa_trigger": "soak_exa_trigger",
    "exa_sensor": "soak_exa_sensor",
    "timeout": "soak_timeout",
}

API_FAULTS = (
    "429_retry_after",
    "5xx_burst",
    "post_5xx_unprocessed",
    "reset_before_post",
    "reset_after_post",
    "hang_past_read_timeout",
    "hang_after_post",
    "truncated_body",
    "list_lag",
    "list_hides_new_runs",
    "exa_5xx_burst",
    "exa_reset_after_trigger",
)
PROCESS_FAULTS = (
    "kill_worker",
    "kill_triggerer",
    "stop_cont_triggerer",
    "restart_scheduler",
    "restart_api_server",
    "restart_postgres",
    "restart_redis",
)


@dataclass
class Event:
    at: float  # seconds after the soak started
    kind: str  # "wave", an API fault or a process fault
    args: dict[str, Any] = field(default_factory=dict)


def _kind(rng: random.Random, path: str) -> str:
    names = list(KIND_WEIGHTS)
    kind = rng.choices(names, weights=[KIND_WEIGHTS[n] for n in names])[0]
    if path == "sync" and kind not in SYNC_KINDS and kind != "p404ok":
        kind = "ok"
    if path in ("taskflow",):
        kind = "ok"  # @task.monid maps one endpoint
    return kind


def build(seed: int, minutes: float, rate: float = 30.0) -> list[Event]:
    """Events of a soak: a wave every WAVE_EVERY seconds with about ``rate`` task instances a minute,
    an API fault every 6-14 s, and process faults: each kind once, in a seeded order, over the first
    runs, then one every 40-80 s."""
    rng = random.Random(seed)
    span = minutes * 60.0
    events: list[Event] = []
    per_wave = max(3, round(rate * WAVE_EVERY / 60.0))
    t, wave = 2.0, 0
    while t < span:
        dags: dict[str, list[str]] = {}
        for _ in range(per_wave):
            path = PATHS[(wave + rng.randrange(len(PATHS))) % len(PATHS)]
            dags.setdefault(path, []).append("never" if path == "timeout" else _kind(rng, path))
        events.append(Event(round(t, 1), "wave", {"wave": wave, "dags": dags}))
        t += WAVE_EVERY
        wave += 1
    t = 8.0
    while t < span:
        events.append(Event(round(t, 1), rng.choice(API_FAULTS), {"times": rng.randint(1, 3)}))
        t += rng.uniform(6, 14)
    order = list(PROCESS_FAULTS)
    rng.shuffle(order)
    t, i = 15.0, 0
    gap = max(15.0, (span - 20.0) / len(order)) if span < 60 * len(order) else 50.0
    while t < span:
        kind = order[i] if i < len(order) else rng.choice(PROCESS_FAULTS)
        events.append(Event(round(t, 1), kind, {"target": rng.choice(("1", "2"))}))
        t += gap if i < len(order) else rng.uniform(40, 80)
        i += 1
    events.sort(key=lambda e: (e.at, e.kind))
    return events


def digest(events: list[Event]) -> str:
    return hashlib.sha256(json.dumps([asdict(e) for e in events], sort_keys=True).encode()).hexdigest()[:16]
