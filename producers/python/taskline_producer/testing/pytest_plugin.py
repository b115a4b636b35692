"""The pytest plugin of `taskline-producer[testing]` (entry point `pytest11`): a fixture that hands
a test a fresh `RecordingProducer`.

    async def test_signup_sends_a_welcome_task(taskline_producer):
        await signup(user_id=7, producer=taskline_producer)
        taskline_producer.assert_sent("create_task", user_id=7, title="Welcome")

The marker `taskline_producer` passes its keyword arguments to `RecordingProducer`, e.g. a
signing key or the workers' limits:

    @pytest.mark.taskline_producer(signing_key=SigningKey.of("billing-1", secret))
    async def test_jobs_are_signed(taskline_producer): ...
"""

from __future__ import annotations

import pytest

from taskline_producer.testing.producer import RecordingProducer

__all__ = ["pytest_configure", "taskline_producer"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "taskline_producer(**options): keyword arguments for the taskline_producer fixture's RecordingProducer"
        " (signing_key, queue, max_payload_bytes, max_bulk_payload_bytes, future_tolerance_s, clock)",
    )


@pytest.fixture
def taskline_producer(request: pytest.FixtureRequest) -> RecordingProducer:
    """A `RecordingProducer`: on the default queue, unsigned, with the workers' default limits,
    unless the test's `taskline_producer` marker says otherwise."""
    marker = request.node.get_closest_marker("taskline_producer")
    if marker is not None and marker.args:
        raise TypeError("the taskline_producer marker takes keyword arguments only, e.g. signing_key=...")
    return RecordingProducer(**(marker.kwargs if marker is not None else {}))
