/** The errors this client throws on purpose; anything else comes from the Redis client. */

/** The base class: catch this to handle every refusal of the producer client itself. */
export class TasklineProducerError extends Error {
  override name = "TasklineProducerError";
}

/**
 * A command that the workers would refuse (it would become a dead letter), caught before it was
 * sent. `field` names the member at fault as the caller spelled it (`userId` for the typed
 * helpers, `user_id` for a raw `{function, command}` object); `jobFunction` is the command's
 * job function (`create_task`, ...).
 */
export class InvalidCommandError extends TasklineProducerError {
  override name = "InvalidCommandError";

  constructor(
    readonly jobFunction: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${jobFunction}: ${field} ${problem}`);
  }
}

/** A send option, or the shape of a batch, that the contract does not allow. */
export class InvalidSendError extends TasklineProducerError {
  override name = "InvalidSendError";
}
