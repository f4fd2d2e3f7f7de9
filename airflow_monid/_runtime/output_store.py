"""``output_path``: a run's output written to object storage, so XCom carries only its URL.

Order matters for money. The operators write *before* the run ledger marks the run delivered, so a
write that fails leaves the run undelivered: the retry reuses the run (no second payment) and, since
the run id is the same, writes the same object again. A task instance only ever returns a URL whose
object was written completely.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from airflow_monid.exceptions import ConfigError, ProviderError

log = logging.getLogger("airflow_monid.output_store")

# Single braces, not Jinja: Jinja renders the rest of the path first, and "{{ run_id }}" already means
# the DAG run's id there, hence the API's name in each placeholder.
PLACEHOLDERS = {"Monid": "{monid_run_id}", "Exa": "{exa_run_id}"}


def no_data() -> dict[str, Any]:
    """What a task returns for a run with no data: ``{}``, a value Airflow stores (``None`` it does not)."""
    return {}


class OutputWriteError(ProviderError):
    """Writing ``output_path`` failed. Retryable: the run is kept, so the retry writes it again without paying."""


def _placeholder(api: str) -> str:
    return PLACEHOLDERS[api]


def check_output_path(url: Any, api: str, map_index: int | None = None) -> None:
    """Fail before anything is paid when ``output_path`` cannot be written to.

    Opens the file system (the protocol's package and the URL's connection must exist) but writes
    nothing. A mapped task whose path names neither the run nor the map index gets a warning: its
    instances would overwrite each other's output.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"output_path must be a URL such as file:///data/monid/{_placeholder(api)}.json or "
            f"s3://aws_default@bucket/key.json, got {url!r}."
        )
    for other, placeholder in PLACEHOLDERS.items():
        if other != api and placeholder in url:
            raise ConfigError(
                f"output_path uses {placeholder}, the {other} placeholder; this task runs {api}: use "
                f"{_placeholder(api)}."
            )
    if map_index is not None and map_index >= 0 and _placeholder(api) not in url and str(map_index) not in url:
        log.warning(
            "output_path %s of this mapped task names neither %s nor {{ ti.map_index }}: mapped instances "
            "may overwrite each other's output.",
            url,
            _placeholder(api),
        )
    try:
        _path(url.replace(_placeholder(api), "check")).fs  # noqa: B018 - loads the file system, writes nothing
    except (ImportError, ValueError, TypeError, KeyError, LookupError) as exc:
        raise ConfigError(f"output_path {url!r} cannot be opened: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":  # the URL's connection id does not exist
            raise ConfigError(f"output_path {url!r} cannot be opened: {exc}") from None
        raise


def resolve(url: str, api: str, run_id: str) -> str:
    """The URL of one run's object: the placeholder replaced by the run id (the same on every retry)."""
    return url.replace(_placeholder(api), run_id)


def serialise(url: str, data: Any) -> bytes:
    """JSON; JSON Lines (a record per item) when the path ends in ``.jsonl`` and the data is a list.

    In a ``.jsonl`` file anything else is one record, and ``None`` (no data) is an empty file.
    """
    if urlsplit(url).path.endswith(".jsonl"):
        records = data if isinstance(data, list) else [] if data is None else [data]
        return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode()
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()


def exa_output(run: Any) -> Any:
    """What an Exa task writes: the run's ``output`` (search monitors); Websets runs have none, so the run."""
    return run["output"] if isinstance(run, dict) and "output" in run else run


def write_output(url: str, data: Any, what: str) -> None:
    """Write ``data`` at ``url``, replacing what an earlier try of the same run wrote there.

    :param what: names the run in the error, e.g. ``Monid run 01J...``.
    :raises OutputWriteError: any failure of the file system (retryable).
    """
    body = serialise(url, data)
    try:
        path = _path(url)
        if path.protocol in ("file", "local"):  # object stores have no directories to create
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.write(body)
    except Exception as exc:
        raise OutputWriteError(
            f"Writing the output of {what} to {url} failed ({type(exc).__name__}: {exc}). The run is kept: a "
            "retry of this task writes it again without paying for a new run."
        ) from exc


def _path(url: str) -> Any:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


class OutputStore:
    """Base of every task here: ``output_path`` and what the task delivered.

    ``delivered_run_id``, ``output_url`` and ``lineage_name`` are set when the task delivers, in the
    process that finishes it (after a deferral too), for OpenLineage (:mod:`airflow_monid._runtime.lineage`).
    """

    output_path: str | None
    output_api: str = "Monid"
    log: Any
    delivered_run_id: str | None = None
    output_url: str | None = None
    lineage_name: str | None = None

    def _check_output_path(self, context: Any) -> None:
        """Called at the start of ``execute``, before any paid request."""
        if not self.output_path:
            return
        if getattr(self, "wait_for_completion", True) is False:
            raise ConfigError("output_path needs wait_for_completion=True: a run that is not awaited has no output.")
        ti = context.get("ti")
        check_output_path(self.output_path, self.output_api, getattr(ti, "map_index", None))

    def _deliver(self, run_id: str, data: Any, lineage_name: str | None = None) -> Any:
        """The task's return value: ``data``, or the URL it was written to when ``output_path`` is set.

        An Exa task returns the run's JSON but writes the run's ``output`` (:func:`exa_output`). No data
        (an allowed provider status, a ``null`` output) returns ``{}`` (:func:`no_data`), never ``None``: Airflow
        stores no XCom for ``None``, and a mapped task's collected results would then shift against
        their inputs (README "XCom contract").
        """
        self.delivered_run_id = run_id
        if lineage_name:
            self.lineage_name = lineage_name
        if not self.output_path:
            return no_data() if data is None else data
        url = resolve(self.output_path, self.output_api, run_id)
        written = exa_output(data) if self.output_api == "Exa" else data
        write_output(url, written, f"{self.output_api} run {run_id}")
        self.output_url = url
        self.log.info("Wrote the output of %s run %s to %s.", self.output_api, run_id, url)
        return url
