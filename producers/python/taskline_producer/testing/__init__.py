"""Test helpers for services that send taskline commands: what was sent, checked without Redis.

    from taskline_producer.testing import RecordingProducer

    producer = RecordingProducer()
    await signup(user_id=7, producer=producer)          # the service's code, given the producer
    producer.assert_sent("create_task", user_id=7, title="Welcome")

`RecordingProducer` is the real `TaskProducer` over Redis kept in memory: it validates, builds
and signs every job as the real one does, and reads each job back as a worker would, raising
`WouldBeRefused` for one a worker would dead-letter. With the `testing` extra installed
(`pip install "taskline-producer[testing]"`), pytest gets a `taskline_producer` fixture.
Imports only what the producer itself imports (no pytest, no Redis server, no worker code).
"""

from taskline_producer.testing.inspection import SentJob, WouldBeRefused, inspect_job
from taskline_producer.testing.matching import ABSENT, SentCommand
from taskline_producer.testing.producer import RecordingProducer

__all__ = ["ABSENT", "RecordingProducer", "SentCommand", "SentJob", "WouldBeRefused", "inspect_job"]
