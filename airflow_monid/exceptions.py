"""One exception family for everything this provider raises, Monid and Exa alike.

Whether Airflow may retry is decided by the exception's type, never at a call site:

* :class:`PermanentError` (and every subclass) is also an ``AirflowFailException``: a retry cannot fix
  it (bad input, a refused key, a missing monitor, a blocked run), so Airflow fails the task at once.
* Everything else is a plain ``AirflowException``: Airflow retries it when the task has retries left.

The names are neutral (one family for both APIs); Exa code raises the ``Exa*`` subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

#: The advice closing every "a paid request may have reached the API" message (shared by the hooks).
NOT_RESENT = (
    "It was not sent again because it spends money: a run may exist and may have been paid. "
    "Check the runs list before retrying."
)


class ProviderError(AirflowException):
    """Base class of every error raised by airflow-provider-monid (retryable unless permanent)."""


class PermanentError(ProviderError, AirflowFailException):
    """An error that retrying the task cannot fix: Airflow fails the task without using a retry."""


class ConfigError(PermanentError, ValueError):
    """Invalid argument, connection or input, detected before any request is sent."""


class CostLimitError(PermanentError):
    """``max_cost`` refused the run before paying (price too high, unbounded, or another currency)."""


class InputSchemaError(ConfigError):
    """``validate_input=True``: the input does not match the endpoint's published schema; nothing was paid."""


class APIError(ProviderError):
    """The API answered with an error status (the request core raises one of the two subclasses).

    :param api: API name used in messages (``Monid API`` or ``Exa API``).
    :param method: HTTP method of the failed request.
    :param path: request path (never contains the key).
    :param status_code: HTTP status of the answer.
    :param message: the API's own message, or the start of a non-JSON body (key scrubbed).
    :param request_id: the ``x-request-id`` header, to quote in support tickets.
    :param tag: the API's error tag, when it sends one.
    :param retry_after: the server's ``Retry-After`` in seconds (429/503), when it sent one.
    :param url: the URL tried (base URL and path, no query string, never the key).
    :param paid: the request spends money (then the message says that nothing was paid: the API refused it).
    """

    def __new__(cls, *args: object, **kwargs: object) -> APIError:
        # ``APIError(status_code=401, ...)`` builds the right subclass, so the type alone decides retries.
        if cls is APIError:
            status = kwargs.get("status_code")
            if isinstance(status, int):
                cls = PermanentAPIError if cls.status_is_permanent(status) else TransientAPIError
        return super().__new__(cls)

    def __init__(
        self,
        *,
        api: str,
        method: str,
        path: str,
        status_code: int,
        message: str,
        request_id: str | None = None,
        tag: str | None = None,
        retry_after: float | None = None,
        url: str | None = None,
        paid: bool = False,
    ) -> None:
        self.api = api
        self.method = method
        self.path = path
        self.url = url
        self.status_code = status_code  # type: ignore[assignment]  # Airflow declares an HTTPStatus
        self.message = message
        self.request_id = request_id
        self.tag = tag
        self.retry_after = retry_after
        text = f"{api} {method} {path} failed with HTTP {status_code}: {message}"
        if tag:
            text += f" [{tag}]"
        where = f"URL: {url}; " if url else ""
        text += f" ({where}x-request-id: {request_id or 'none'})"
        if paid:
            text += f". Nothing was paid: the {api} refused the request"
        if status_code == 401:
            text += ". Check the API key in the connection's password field"
        super().__init__(text)

    @staticmethod
    def status_is_permanent(status_code: int) -> bool:
        """4xx except 408 and 429 cannot be fixed by asking again; the request core's one rule."""
        return 400 <= status_code < 500 and status_code not in (408, 429)

    @property
    def is_permanent(self) -> bool:
        """Whether a retry cannot fix it; the type says the same (:class:`PermanentAPIError`)."""
        return isinstance(self, PermanentError)


class PermanentAPIError(APIError, PermanentError):
    """400/401/402/403/404/409/422…: the request, the key or the object is wrong; no retry."""


class TransientAPIError(APIError):
    """408/429/5xx that outlived the request core's own retries; Airflow may retry the task."""


class TransportError(ProviderError):
    """The API could not be reached, or the answer was lost (after the request core's retries).

    :param api: API name used in messages (``Monid API`` or ``Exa API``).
    :param method: HTTP method of the failed request.
    :param url: the URL tried (no query string, never the key).
    :param base_url: the connection's base URL, to say which API could not be reached.
    :param reached: the request may have reached the API (the connection was open when it failed).
    """

    def __init__(
        self,
        message: str,
        *,
        api: str | None = None,
        method: str | None = None,
        url: str | None = None,
        base_url: str | None = None,
        reached: bool = False,
    ) -> None:
        self.api = api
        self.method = method
        self.url = url
        self.base_url = base_url
        self.reached = reached
        super().__init__(message)


class ResponseError(ProviderError):
    """The API answered with a body we cannot use (not JSON, or not the expected shape)."""


class PaginationLoopError(ResponseError):
    """A list endpoint returned a cursor it had already returned."""


class UnclearRequestError(ProviderError):
    """A paid request may have reached the API but its answer was lost; it is not re-sent.

    :param happened: what happened, without the advice (the message is ``happened`` + the advice).
    :param url: the URL tried (no query string, never the key).
    """

    def __init__(self, message: str, *, happened: str | None = None, url: str | None = None) -> None:
        self.happened = happened if happened is not None else message.removesuffix(NOT_RESENT).rstrip()
        self.url = url
        super().__init__(message)

    def after_search(self, since: datetime | None, found: Sequence[Any] = ()) -> UnclearRequestError:
        """The same failure once the provider has looked for the run it may have created and adopted none.

        The "check the runs list" advice is then wrong: the list was checked. ``found`` are the runs
        with this input that were not reusable (objects with a ``run_id``, or ids).
        """
        when = since.isoformat(timespec="seconds") if since is not None else "the submission"
        ids = [str(getattr(run, "run_id", run)) for run in found]
        if ids:
            seen = (
                f"the runs list since {when} holds {len(ids)} run(s) with this input, none reusable "
                f"({', '.join(ids)}): none of them is a run to wait for"
            )
        else:
            seen = f"the runs list since {when} holds no run with this input: nothing was paid as far as Monid shows"
        advice = "A retry of this task looks once more, then submits again (and pays for a new run)."
        message = f"{self.happened.rstrip('. ')}. The provider then looked: {seen}. {advice}"
        return type(self)(message, happened=self.happened, url=self.url)


class RunError(ProviderError):
    """A run ended badly in a way a new run may fix (FAILED, TIMED_OUT, provider 429/5xx...).

    :param run_id: the run, when known.
    :param status: the run's status as the API spelled it.
    """

    def __init__(self, message: str, *, run_id: str | None = None, status: str | None = None) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(message)


class RunPermanentError(RunError, PermanentError):
    """A run ended badly in a way a new run cannot fix (BLOCKED, provider 4xx, a cancelled monitor run)."""


# --- Exa ---------------------------------------------------------------------------------------


class ExaRunError(RunError):
    """An Exa monitor run failed in a way a new run may fix (``rate_limited``…), or was not seen in time."""


class ExaRunPermanentError(ExaRunError, RunPermanentError):
    """An Exa monitor run failed or was cancelled in a way a new run cannot fix."""


class ExaUnclearTriggerError(UnclearRequestError):
    """``POST /monitors/{id}/trigger`` may have started a billed run, but which one cannot be told."""


class ExaUnclearTriggerPermanentError(ExaUnclearTriggerError, PermanentError):
    """The trigger's answer was lost and no new run appeared: triggering again could pay twice."""
