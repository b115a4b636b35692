/**
 * @taskline/producer: publish taskline task commands onto Redis from Node.js.
 *
 * The public API; everything else under src/ is internal.
 */
export { TaskProducer, DEFAULT_JOB_TTL_MS } from "./producer.js";
export type { BulkOptions, ProducerOptions, SendOptions } from "./producer.js";
export { Receipt, DEFAULT_OUTCOME_TIMEOUT_MS } from "./receipts.js";
export type { BulkReceipt, OutcomeOptions, SendReport } from "./receipts.js";
export type { Outcome, OutcomeState, PendingState, RecordedState } from "./outcome.js";
export { completeTaskCommand, createTaskCommand, updateTaskCommand } from "./commands.js";
export type { CommandStamp, CompleteTaskInput, CreateTaskInput, UpdateTaskInput } from "./commands.js";
export {
  BULK_JOB,
  COMPLETE_TASK,
  CREATE_TASK,
  DEFAULT_MAX_BULK_PAYLOAD_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DESCRIPTION_MAX,
  MAX_BULK_COMMANDS,
  TITLE_MAX,
  UPDATE_TASK,
  USER_ID_MAX,
  checkCommand,
  checkItem,
} from "./contract.js";
export type {
  Command,
  CompleteTask,
  CompleteTaskCommand,
  CreateTask,
  CreateTaskCommand,
  JobFunction,
  UpdateTask,
  UpdateTaskCommand,
} from "./contract.js";
export { OUTCOMES_CONTRACT_VERSION, OUTCOME_TTL_MAX_S } from "./envelope.js";
export { SIGNATURE_CONTRACT_VERSION, signJob, signingKeyFromEnv } from "./signing.js";
export type { SigningKey } from "./signing.js";
export { InvalidCommandError, InvalidSendError, TasklineProducerError } from "./errors.js";
export { DEFAULT_QUEUE } from "./keys.js";
export { addToOutbox, OUTBOX_INSERT } from "./outbox.js";
export type { OutboxClient } from "./outbox.js";
export type { BlockingRedis, DuplicableRedis, ProducerRedis } from "./redis-client.js";
