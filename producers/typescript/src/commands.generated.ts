// Generated from docs/commands.schema.json by scripts/generate-types.mjs (npm run gen).
// Do not edit: change the Python models, regenerate the schema, then run npm run gen.

/**
 * The single positional argument of each taskline job, by job function name.
 */
export type JobArgument = CreateTask | UpdateTask | CompleteTask | ApplyCommands;
/**
 * Change a task's title and/or description; an absent field is left as it is.
 */
export type UpdateTask =
  | {
      /**
       * Unique per command; what deduplicates it.
       */
      command_id: string;
      description?: string | null;
      /**
       * When the producer issued the command (RFC 3339).
       */
      issued_at: string;
      /**
       * The task's id, chosen by the producer of its create_task.
       */
      task_id: string;
      title: string;
      /**
       * The owner of the task, an id in the user table.
       */
      user_id: number;
    }
  | {
      /**
       * Unique per command; what deduplicates it.
       */
      command_id: string;
      description: string | null;
      /**
       * When the producer issued the command (RFC 3339).
       */
      issued_at: string;
      /**
       * The task's id, chosen by the producer of its create_task.
       */
      task_id: string;
      title?: string;
      /**
       * The owner of the task, an id in the user table.
       */
      user_id: number;
    };
/**
 * The single argument of an apply_commands job: a list of {"function": <job name>, "command": <that command>} objects.
 *
 * @minItems 1
 * @maxItems 1000
 */
export type ApplyCommands = [
  (
    | {
        command: CreateTask;
        function: "create_task";
      }
    | {
        command: UpdateTask;
        function: "update_task";
      }
    | {
        command: CompleteTask;
        function: "complete_task";
      }
  ),
  ...(
    | {
        command: CreateTask;
        function: "create_task";
      }
    | {
        command: UpdateTask;
        function: "update_task";
      }
    | {
        command: CompleteTask;
        function: "complete_task";
      }
  )[]
];

/**
 * Create a task. `description` absent means null.
 */
export interface CreateTask {
  /**
   * Unique per command; what deduplicates it.
   */
  command_id: string;
  description?: string | null;
  /**
   * When the producer issued the command (RFC 3339).
   */
  issued_at: string;
  /**
   * The task's id, chosen by the producer of its create_task.
   */
  task_id: string;
  title: string;
  /**
   * The owner of the task, an id in the user table.
   */
  user_id: number;
}
/**
 * Mark a task completed; `completed_at` becomes the earliest completion's `issued_at`.
 */
export interface CompleteTask {
  /**
   * Unique per command; what deduplicates it.
   */
  command_id: string;
  /**
   * When the producer issued the command (RFC 3339).
   */
  issued_at: string;
  /**
   * The task's id, chosen by the producer of its create_task.
   */
  task_id: string;
  /**
   * The owner of the task, an id in the user table.
   */
  user_id: number;
}
