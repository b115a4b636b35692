"""taskline producers: publish task commands onto Redis for taskline workers.

Imports only pydantic, redis and the standard library: no database code.
"""

from taskline_producer.client import TaskProducer
from taskline_producer.contract import (
    BULK_JOB,
    COMMAND_JOBS,
    CONTRACT_VERSION,
    DEFAULT_QUEUE,
    Command,
    CompleteTask,
    CreateTask,
    UpdateTask,
    command_json_schema,
)
from taskline_producer.outcomes import Outcome, OutcomeTimeout
from taskline_producer.receipts import BulkReceipt, Receipt, SendReport
from taskline_producer.signing import SigningKey, sign_job

__all__ = [
    "BULK_JOB",
    "COMMAND_JOBS",
    "CONTRACT_VERSION",
    "DEFAULT_QUEUE",
    "BulkReceipt",
    "Command",
    "CompleteTask",
    "CreateTask",
    "Outcome",
    "OutcomeTimeout",
    "Receipt",
    "SendReport",
    "SigningKey",
    "TaskProducer",
    "UpdateTask",
    "command_json_schema",
    "sign_job",
]
