/**
 * W3C trace context in jobs (contract version 4): the producer's side of OpenTelemetry.
 *
 * When the service runs OpenTelemetry (`@opentelemetry/api` installed beside this package, an
 * optional peer dependency, and an SDK registered by the service as usual), each send is a
 * PRODUCER span `send <queue>` after OpenTelemetry's messaging conventions, and each of its jobs
 * carries that span's trace context in `k.traceparent` (and `k.tracestate`), written by the
 * registered propagator (so `OTEL_PROPAGATORS` decides; `none`: nothing is sent). Such a job is
 * contract version 4. Without `@opentelemetry/api`, or with nothing to send (no SDK, no
 * propagator), jobs are written exactly as before. The Python client does the same
 * (`taskline_producer/tracing.py`); the trace context is inside the signed bytes (docs/tracing.md).
 */

/** The contract version that added `k.traceparent` and `k.tracestate`. */
export const TRACE_CONTEXT_CONTRACT_VERSION = 4;
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

/** The members a job carries from a propagator's carrier. */
export function traceContextOf(carrier: Record<string, string>): Record<string, string> {
  const parent = carrier.traceparent;
  if (typeof parent !== "string" || parent.length === 0 || parent.length > TRACEPARENT_MAX_CHARS) return {};
  const context: Record<string, string> = { traceparent: parent };
  const state = carrier.tracestate;
  if (typeof state === "string" && state.length > 0 && state.length <= TRACESTATE_MAX_CHARS) context.tracestate = state;
  return context;
}

/** Job options (`k`) carrying a trace context: contract raised to 4. Unchanged without one. */
export function tracedKwargs(kwargs: Record<string, unknown>, context: Record<string, string>): Record<string, unknown> {
  if (context.traceparent === undefined) return kwargs;
  const contract = Math.max(Number(kwargs.contract ?? 1), TRACE_CONTEXT_CONTRACT_VERSION);
  return { ...kwargs, contract, ...context };
}

/** Run `send` inside a `send <queue>` span; it gets the trace context its jobs carry (empty without one). */
export async function sending<T>(
  queue: string,
  details: SendDetails,
  send: (context: Record<string, string>) => Promise<T>,
): Promise<T> {
  const api = await otelApi();
  if (api === null) return send({});
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
      return await send(traceContextOf(carrier));
    } catch (error) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: api.SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}
