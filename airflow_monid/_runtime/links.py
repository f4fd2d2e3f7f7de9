"""Extra links whose URL the task keeps while it runs, so resolving one never reads XCom back.

Airflow 3 calls ``get_link`` once, on the worker that ran the try, when the try ends (success,
failure or deferral), and stores the answer for the UI; the API server imports no provider code.
Reading the URL back from XCom there logs ``[error] XCom not found`` for every try that ended
before it knew its run, which reads like a failure although nothing went wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey


class TaskStateLink(BaseOperatorLink):
    """A link to the URL held in the operator attribute :attr:`attribute` (empty until it is known)."""

    attribute: ClassVar[str]

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        value = getattr(operator, self.attribute, None)
        return value if isinstance(value, str) else ""
