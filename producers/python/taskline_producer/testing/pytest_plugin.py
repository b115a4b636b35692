"""The pytest plugin of `taskline-producer[testing]` (entry point `pytest11`): a fixture that hands
a test a fresh `RecordingProducer`.

    async def test_signup_sends_a_welcome_task(taskline_producer):
        await signup(user_id=7, producer=taskline_producer)
        taskline_producer.assert_sent("create_task", user_id=7, title="Welcome")

For a signing producer, or other worker settings, build your own `RecordingProducer(...)`.
"""

from __future__ import annotations

import pytest

from taskline_producer.testing.producer import RecordingProducer

__all__ = ["taskline_producer"]


@pytest.fixture
def taskline_producer() -> RecordingProducer:
    """A `RecordingProducer` on the default queue, unsigned, with the workers' default limits."""
    return RecordingProducer()
