"""One exception family for everything this provider raises.

``MonidError`` subclasses ``AirflowException`` so Airflow may retry the task; the subclasses that
also inherit ``AirflowFailException`` mark failures that a retry cannot fix (bad input, bad key,
a blocked run), so Airflow fails the task at once instead of paying for a retry.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class MonidError(AirflowException):
    """Base class of every error raised by airflow-provider-monid (retryable by default)."""


class MonidPermanentError(MonidError, AirflowFailException):
    """An error that retrying the task cannot fix."""


class MonidConfigError(MonidPermanentError, ValueError):
    """Invalid argument, connection or input, detected before any request is sent."""


class MonidAPIError(MonidError):
    """The API answered with an error status.

    :param api: API name used in messages (``Monid API`` or ``Exa API``).
    :param method: HTTP method of the failed request.
    :param path: request path (never contains the key).
    :param status_code: HTTP status of the answer.
    :param message: the API's own message, or the start of a non-JSON body.
    :param request_id: the ``x-request-id`` header, to quote in support tickets.
    """

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
    ) -> None:
        self.api = api
        self.method = method
        self.path = path
        self.status_code = status_code  # type: ignore[assignment]  # Airflow declares an HTTPStatus
        self.message = message
        self.request_id = request_id
        self.tag = tag
        text = f"{api} {method} {path} failed with HTTP {status_code}: {message}"
        if tag:
            text += f" [{tag}]"
        text += f" (x-request-id: {request_id or 'none'})"
        super().__init__(text)

    @property
    def is_permanent(self) -> bool:
        """400/401/402/403/404 and other 4xx except 408/429 cannot be fixed by retrying."""
        return 400 <= self.status_code < 500 and self.status_code not in (408, 429)


class MonidTransportError(MonidError):
    """The API could not be reached, or the answer was lost or unreadable (after retries)."""


class MonidResponseError(MonidError):
    """The API answered with a body we cannot use (not JSON, or not the expected shape)."""


class MonidPaginationLoopError(MonidResponseError):
    """A list endpoint returned a cursor it had already returned."""


class MonidUnclearSubmitError(MonidError):
    """A paid request may have reached the API but its answer was lost; it is not re-sent."""


class MonidRunError(MonidError):
    """A run ended badly in a way a new run may fix (FAILED, TIMED_OUT, provider 429/5xx...)."""

    def __init__(self, message: str, *, run_id: str | None = None, status: str | None = None) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(message)


class MonidRunPermanentError(MonidRunError, AirflowFailException):
    """A run ended badly in a way a new run cannot fix (BLOCKED, provider 4xx, cancelled monitor run)."""
