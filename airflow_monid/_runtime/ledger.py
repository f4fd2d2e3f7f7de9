"""The run ledger: which run a task instance paid for, kept across its tries and clears.

The ledger lives in the task's ``task_state_store`` (Airflow 3.3+), which survives retries and clears;
without one (3.0-3.2, or ``durable=False``) it keeps nothing and every call is a no-op. One typed
:class:`LedgerEntry` per task instance and task type; one rule, :meth:`RunLedger.candidate`, says what
a new try may reuse (the README's decision table, ledger rows M2-M7 and E1-E4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

MAX_DELIVERED = 20  # delivered run ids kept (reconciliation only looks at the 100 newest runs anyway)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class LedgerEntry:
    """What the store holds for one task instance (stored as a plain JSON object with these keys).

    :param run_id: the run this task instance paid for (or adopted), once known.
    :param hash: digest of what was asked for (Monid: provider, endpoint and input; Exa: the monitor),
        so a changed templated input never reuses the run of another.
    :param delivered: the task returned that run's result (a later cycle then pays for fresh data).
    :param cycle: first try number of the cycle that wrote the entry (``_runtime.deferral.cycle_of``):
        retries share a cycle, a clear starts a new one.
    :param delivered_runs: runs delivered by any earlier try or cycle: never adopted again.
    :param input: ``@task.monid``: the input its function returned, recorded before paying.
    :param input_cycle: the cycle ``input`` belongs to (a clear calls the function anew).
    :param phase: Exa only, the trigger intent around the billed ``POST /trigger``
        (:mod:`airflow_monid._exa.ledger`).
    :param snapshot: Exa only, the run ids listed before the trigger (a new run is one not in it).
    :param at: Exa only, when the intent was written (epoch seconds).
    """

    run_id: str | None = None
    hash: str | None = None
    delivered: bool = False
    cycle: int | None = None
    delivered_runs: tuple[str, ...] = ()
    input: dict[str, Any] | None = None
    input_cycle: int | None = None
    phase: str | None = None
    snapshot: tuple[str, ...] = ()
    at: float | None = None

    @classmethod
    def from_stored(cls, value: Any) -> LedgerEntry | None:
        """Tolerant read: unknown keys are ignored and a field of the wrong type counts as absent, so an
        entry written by another version never makes a try fail (it only loses what it cannot read)."""
        if not isinstance(value, dict):
            return None
        runs = value.get("delivered_runs")
        snapshot = value.get("snapshot")
        at = value.get("at")
        return cls(
            run_id=_text(value.get("run_id")),
            hash=_text(value.get("hash")),
            delivered=value.get("delivered") is True,
            cycle=_whole(value.get("cycle")),
            delivered_runs=tuple(r for r in runs if isinstance(r, str)) if isinstance(runs, list) else (),
            input=value.get("input") if isinstance(value.get("input"), dict) else None,
            input_cycle=_whole(value.get("input_cycle")),
            phase=_text(value.get("phase")),
            snapshot=tuple(r for r in snapshot if isinstance(r, str)) if isinstance(snapshot, list) else (),
            at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
        )

    def to_stored(self) -> dict[str, Any]:
        """The JSON object written to the store: unset optional fields are left out."""
        data = asdict(self)
        data["delivered_runs"], data["snapshot"] = list(self.delivered_runs), list(self.snapshot)
        return {k: v for k, v in data.items() if v not in (None, [])}


@dataclass(frozen=True)
class Candidate:
    """What a new try may build on, from :meth:`RunLedger.candidate`.

    :param run_id: a stored run to reuse if the API still calls it reusable (``None``: nothing to reuse).
    :param why: the reason, for the task log.
    :param delivered: the stored run was delivered already (by a try of this cycle).
    :param phase: Exa only, a trigger intent of this cycle with no run id yet.
    :param snapshot: Exa only, the run ids listed before that trigger.
    """

    run_id: str | None
    why: str
    delivered: bool = False
    phase: str | None = None
    snapshot: frozenset[str] = field(default_factory=frozenset)


_UNREAD = object()


class RunLedger:
    """The run a task instance paid for, in ``task_state_store`` when Airflow offers one (3.3+).

    The entry is read once per object and then kept in memory, updated by every write: only the try
    that runs writes its own task instance's entry, so what it wrote is what the store holds (each
    read is an Execution-API round trip; a try used to make five).

    :param context: the task's context.
    :param enabled: ``False`` keeps nothing (``durable=False``).
    :param key: the store key (one per task type, so a Monid and an Exa entry never mix).
    :param cycle: the current cycle.
    """

    def __init__(self, context: Any, *, key: str, enabled: bool = True, cycle: int = 1) -> None:
        self.key = key
        self.cycle = cycle
        self.context = context
        self.store = context.get("task_state_store") if enabled else None
        self._entry: Any = _UNREAD

    @property
    def available(self) -> bool:
        return self.store is not None

    def load(self) -> LedgerEntry | None:
        if self.store is None:
            return None
        if self._entry is _UNREAD:
            self._entry = LedgerEntry.from_stored(self.store.get(self.key))
        return self._entry

    def _save(self, entry: LedgerEntry) -> None:
        if self.store is not None:
            self.store.set(self.key, entry.to_stored())
            self._entry = entry

    def write(self, **fields: Any) -> None:
        """A new entry for this cycle. What must survive it survives: the runs delivered before (so none
        is adopted again) and the input recorded by this cycle's first try (``@task.monid``)."""
        if self.store is None:
            return
        old = self.load() or LedgerEntry()
        kept: dict[str, Any] = {"delivered_runs": old.delivered_runs}
        if old.input is not None and old.input_cycle == self.cycle:
            kept.update(input=old.input, input_cycle=self.cycle)
        self._save(LedgerEntry(**{**kept, **fields, "cycle": self.cycle}))

    def remember(self, run_id: str, digest: str) -> None:
        """The run is known: written before the task waits for it (a retry then reuses it)."""
        self.write(run_id=run_id, hash=digest, delivered=False)

    def record_intent(self, digest: str, phase: str, snapshot: set[str], at: float) -> None:
        """Exa: the trigger intent around the billed POST (no run id yet)."""
        self.write(hash=digest, phase=phase, snapshot=tuple(sorted(snapshot)), at=at)

    def record_input(self, payload: dict[str, Any]) -> None:
        """Keep the input a decorated task's function returned, before anything is paid for it.

        A retry of this cycle sends it again instead of calling the function (whose result may change:
        timestamps, randomness), so the run it paid for matches and is reused. Written next to the
        run fields without touching them: an input alone is no run record (:meth:`has_cycle_entry`).
        """
        if self.store is not None:
            self._save(replace(self.load() or LedgerEntry(), input=payload, input_cycle=self.cycle))

    def recorded_input(self) -> dict[str, Any] | None:
        """The input recorded by an earlier try of this cycle (a clear calls the function anew)."""
        entry = self.load()
        return entry.input if entry is not None and entry.input_cycle == self.cycle else None

    def mark_delivered(self) -> None:
        entry = self.load()
        if entry is not None and entry.run_id is not None:
            earlier = [r for r in entry.delivered_runs if r != entry.run_id]
            delivered = (*earlier, entry.run_id)[-MAX_DELIVERED:]
            self._save(replace(entry, delivered=True, delivered_runs=delivered, cycle=self.cycle))

    def has_cycle_entry(self) -> bool:
        entry = self.load()
        return entry is not None and entry.cycle == self.cycle

    def delivered_ids(self) -> set[str]:
        """Runs already delivered by an earlier try or cycle: never adopted again."""
        entry = self.load()
        if entry is None:
            return set()
        return set(entry.delivered_runs) | ({entry.run_id} if entry.delivered and entry.run_id else set())

    def candidate(self, digest: str) -> Candidate:
        """The one reuse rule (decision table, ledger rows), for Monid runs and Exa triggers alike.

        Another input → nothing; delivered in an earlier cycle (a clear after success) → fresh data;
        a stored run delivered in this cycle (the worker died before Airflow recorded the success) or
        not delivered → reuse it when the run itself is reusable. Exa: a trigger intent without a run
        id speaks for the tries of its own cycle only (after a clear the user asks anew).
        """
        entry = self.load()
        if entry is None or (entry.run_id is None and entry.phase is None):
            return Candidate(None, "the run ledger is empty")
        what = f"stored run {entry.run_id}" if entry.run_id else f"the earlier try's trigger ({entry.phase})"
        if entry.hash != digest:
            return Candidate(None, f"{what} was for a different input")
        if entry.delivered and entry.cycle != self.cycle:
            return Candidate(None, f"{what} was delivered before the task was cleared: fresh data")
        if entry.run_id is not None:
            return Candidate(entry.run_id, what, delivered=entry.delivered)
        if entry.cycle != self.cycle:
            return Candidate(None, f"{what} belongs to an earlier cycle")
        return Candidate(None, what, phase=entry.phase, snapshot=frozenset(entry.snapshot))
