/**
 * W3C trace context beside jobs: the producer's side of OpenTelemetry.
 *
 * When the service runs OpenTelemetry (`@opentelemetry/api` installed beside this package, an
 * optional peer dependency, and an SDK registered by the service as usual), each send is a
 * PRODUCER span `send <queue>` after OpenTelemetry's messaging conventions, and that span's trace
 * context (written by the registered propagator, so `OTEL_PROPAGATORS` decides; `none`: nothing
 * is sent) goes into a small key beside each of its jobs, `taskline:trace:<job id>`, written by
 * the enqueue script with the job and its expiry. The job's bytes do not change: every worker,
 * whether it knows tracing or not, runs a traced job. Without `@opentelemetry/api`, or with
 * nothing to send (no SDK, no propagator), nothing more is written. The Python client does the
 * same (`taskline_producer/tracing.py`); the trace context is outside the signed bytes
 * (docs/tracing.md says why that is safe).
 */

export const TRACEPARENT_MAX_CHARS = 256;
export const TRACESTATE_MAX_CHARS = 512;

type OtelApi = typeof import("@opentelemetry/api");

let loaded: Promise<OtelApi | null> | undefined;

/** `@opentelemetry/api` when it is installed, else null (looked up once). */
function otelApi(): Promise<OtelApi | null> {
  loaded ??= import("@opentelemetry/api").then(
    (api) => api,
    () => null,
  );
  return loaded;
}

/** What a send is, for its span's attributes. */
export interface SendDetails {
  messageId?: string;
  messageCount?: number;
  bulk?: boolean;
}

/** What a job's trace key holds from a propagator's carrier. */
export function traceContextOf(carrier: Record<string, string>): Record<string, string> {
  const parent = carrier.traceparent;
  if (typeof parent !== "string" || parent.length === 0 || parent.length > TRACEPARENT_MAX_CHARS) return {};
  const context: Record<string, string> = { traceparent: parent };
  const state = carrier.tracestate;
  if (typeof state === "string" && state.length > 0 && state.length <= TRACESTATE_MAX_CHARS) context.tracestate = state;
  return context;
}

/** The trace key's value: the context as compact JSON, traceparent first (as the Python client writes it); undefined without one. */
export function traceValue(context: Record<string, string>): string | undefined {
  return context.traceparent === undefined ? undefined : JSON.stringify(context);
}

/** Run `send` inside a `send <queue>` span; it gets the value of its jobs' trace keys (undefined without one). */
export async function sending<T>(
  queue: string,
  details: SendDetails,
  send: (trace: string | undefined) => Promise<T>,
): Promise<T> {
  const api = await otelApi();
  if (api === null) return send(undefined);
  const attributes: Record<string, string | number> = {
    "messaging.system": "taskline",
    "messaging.operation.type": "send",
    "messaging.operation.name": "send",
    "messaging.destination.name": queue,
  };
  if (details.messageId !== undefined) attributes["messaging.message.id"] = details.messageId;
  const count = details.messageCount ?? 1;
  if (count !== 1 || details.bulk === true) attributes["messaging.batch.message_count"] = count;
  const tracer = api.trace.getTracer("@taskline/producer");
  return tracer.startActiveSpan(`send ${queue}`, { kind: api.SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      const carrier: Record<string, string> = {};
      api.propagation.inject(api.context.active(), carrier);
      return await send(traceValue(traceContextOf(carrier)));
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: api.SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}
