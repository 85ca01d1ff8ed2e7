"""Retry conditions for Prefect tasks: retry transient I/O failures, never bad input or bugs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RetryCondition = Callable[[Any, Any, Any], bool]


def retry_on(*transient: type[BaseException]) -> RetryCondition:
    """A `retry_condition_fn` that retries only when the task failed with one of `transient`.

    Args:
        transient: Exception types that mean "try again" (connection drops, timeouts).

    Returns:
        A function for `@task(retry_condition_fn=...)`.
    """

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except transient:
            return True
        except Exception:
            return False
        return False

    condition.__doc__ = "Retry on " + ", ".join(t.__name__ for t in transient) + " only."
    return condition
