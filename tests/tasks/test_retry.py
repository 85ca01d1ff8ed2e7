"""The shared retry condition: transient failures retry, bad input and bugs do not."""

from __future__ import annotations

import pytest
from prefect.states import Completed, Failed

from tasks.retry import retry_on


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ConnectionError("reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (ValueError("bad row"), False),
        (KeyError("no such column"), False),
    ],
)
def test_retry_on_only_the_transient_types(exc: BaseException, retried: bool) -> None:
    condition = retry_on(ConnectionError, TimeoutError)
    assert condition(None, None, Failed(data=exc)) is retried


def test_retry_on_a_completed_state_is_no_retry() -> None:
    assert retry_on(ConnectionError)(None, None, Completed(data=1)) is False
