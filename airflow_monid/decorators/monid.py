"""``@task.monid``: a TaskFlow function returns the input of a paid Monid run.

::

    @task.monid(provider="apify", endpoint="/apidojo/tweet-scraper", max_cost=0.01, max_results_field="maxItems")
    def tweets(term: str, ds=None) -> dict:
        return {"searchTerms": [f"{term} since:{ds}"], "maxItems": 10}

The function runs on the worker when a try starts (with its arguments, XComArgs resolved, and any
context keys it names) and returns the ``input`` object; the task is then a
:class:`~airflow_monid.operators.monid.MonidRunOperator` with the given operator arguments, and
returns the run's output. The function is not called on resume after a deferral (the run is known),
and a retry of the same cycle sends the input the first try recorded in the run ledger (Airflow 3.3+)
rather than calling the function again, so a function whose result changes does not pay twice.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_monid._runtime.validation import require_json_object
from airflow_monid.exceptions import ConfigError
from airflow_monid.operators.monid import MonidRunOperator
from airflow_monid.version_compat import AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class _MonidDecoratedOperator(DecoratedOperator, MonidRunOperator):
    """A :class:`~airflow_monid.operators.monid.MonidRunOperator` whose ``input`` is the return value of
    ``python_callable``.

    :param python_callable: returns the run's input (a JSON object).
    :param op_args: positional arguments of the callable (templated).
    :param op_kwargs: keyword arguments of the callable (templated).
    """

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *MonidRunOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **MonidRunOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.monid"
    # The input is only known once the function ran: store the rendered fields again afterwards.
    # Not on Airflow 3.0: it sends that update after a failed try too, its API answers 404 and the
    # task runner's finalisation raises; there the rendered input stays the pre-run one.
    overwrite_rtif_after_execution: bool = AIRFLOW_V_3_1_PLUS

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if "input" in kwargs:
            raise ConfigError("@task.monid takes the run's input from the function's return value; do not pass input=.")
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)

    # Airflow 3.0's DecoratedOperator.execute reads ``self.xcom_push`` (common-sql's decorator does the same).
    @property
    def xcom_push(self) -> bool:
        return self.do_xcom_push

    @xcom_push.setter
    def xcom_push(self, value: bool) -> None:
        self.do_xcom_push = value

    def execute(self, context: Context) -> Any:
        name = getattr(self.python_callable, "__name__", "the function")
        ledger = self._ledger(context)
        recorded = ledger.recorded_input()
        if recorded is not None:
            self.log.info("Sending the input an earlier try of this cycle recorded; %s() is not called again.", name)
            self.input = recorded
        else:
            context_merge(context, self.op_kwargs)
            kwargs = determine_kwargs(self.python_callable, self.op_args, context)
            value = self.python_callable(*self.op_args, **kwargs)
            self.input = require_json_object(value, f"the value returned by {name}() (the run's input)")
            ledger.record_input(self.input)
        # DecoratedOperator.execute (asset inlets) -> MonidRunOperator.execute (reuse, guard, pay, wait).
        return super().execute(context)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        # The operator was rebuilt for the resume: show the recorded input in the rendered fields again.
        self.input = self._ledger(context).recorded_input() or self.input
        return super().execute_complete(context, event)


def monid_task(
    python_callable: Callable | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """Wrap a function that returns a Monid run's input into a
    :class:`~airflow_monid.operators.monid.MonidRunOperator` task.

    ``kwargs`` are the operator's arguments (``provider``, ``endpoint``, ``max_cost``,
    ``validate_input``, ``deferrable``...) and any ``BaseOperator`` argument. The task returns the run's
    output, so ``multiple_outputs`` defaults to ``False`` whatever the function's return annotation
    says (it annotates the input, not the output).

    :param python_callable: the function (when used as ``@task.monid`` without arguments).
    :param multiple_outputs: unroll a dict output into one XCom per key.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=bool(multiple_outputs),
        decorated_operator_class=_MonidDecoratedOperator,
        **kwargs,
    )
