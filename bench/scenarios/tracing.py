"""Scenario 9: what tracing costs (docs/tracing.md, "What it costs").

The single-command drain of scenario 3 with one worker (K=1) with tracing off (no OTEL_*
variable: nothing of OpenTelemetry is imported) and on (OTEL_TRACES_EXPORTER=otlp, every
recorded span exported over OTLP/HTTP to a collector stand-in in this process that parses each
request and counts its spans), in the order off, all, tenth, hundredth, hundredth, tenth, all,
off; then the bulk drain of scenario 4 off and all. With tracing on, every job has its
producer's trace context beside it (its trace key), as it would from a traced service (the worker
reads the trace keys in one MGET per claim): the commands are sent
10 at a time (a bulk job of 100 each, for bulk drains), each send a trace of its own, from a
producer that samples every trace (`all`), one in ten (`tenth`) or one in a hundred
(`hundredth`); the worker's sampler follows the producer's decision (the SDK's default,
`parentbased_always_on`). The ratios are of drain rates and of the worker's CPU per command (the
steadier figure on a busy machine).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.scenarios.drain import drain
from bench.suite import Suite

SAMPLED = {"all": 1.0, "tenth": 0.1, "hundredth": 0.01}


class CollectorStandIn:
    """An OTLP/HTTP traces endpoint on a loopback port: parses every request, counts the spans."""

    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.bytes = 0
        self.errors = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    request = ExportTraceServiceRequest.FromString(body)
                    spans = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
                except Exception:
                    owner.errors += 1
                    spans = 0
                owner.requests += 1
                owner.spans += spans
                owner.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def counts(self) -> dict[str, int]:
        return {"requests": self.requests, "spans": self.spans, "bytes": self.bytes, "errors": self.errors}

    def __enter__(self) -> CollectorStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def worker_env(collector: CollectorStandIn) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "taskline-bench-worker",
        "OTEL_BSP_MAX_QUEUE_SIZE": "65536",  # keep every span of a drain (the default, 2048, drops under load)
    }


async def tracing(suite: Suite) -> None:
    """Tracing off and on, alternating, single-command then bulk drains; spans counted per command."""
    env, n = suite.env, suite.sizes.commands
    with CollectorStandIn() as collector:
        runs = [
            ("off", 1, False),
            ("all", 1, False),
            ("tenth", 1, False),
            ("hundredth", 1, False),
            ("hundredth", 2, False),
            ("tenth", 2, False),
            ("all", 2, False),
            ("off", 2, False),
            ("off", 1, True),
            ("all", 1, True),
        ]
        for label, round_, bulk in runs:
            key = f"12 taskline {'bulk ' if bulk else ''}K=1 tracing {label} #{round_}"
            before = collector.counts()
            sampled = SAMPLED.get(label)
            starter = suite.workers(1, extra_env=worker_env(collector) if sampled is not None else None)
            name = f"tr{'b' if bulk else ''}{label}{round_}"
            await suite.attempt(key, drain(env, name, n, bulk, starter, "worker", sampled=sampled))
            after = collector.counts()
            result = suite.scenarios.get(key)
            if result is not None and "error" not in result:
                exported = {name: after[name] - before[name] for name in after}
                result["otlp"] = exported
                result["spans_per_command"] = exported["spans"] / n
    suite.scenarios["12 tracing cost"] = tracing_ratios(suite)


def tracing_ratios(suite: Suite) -> dict[str, Any]:
    """on/off drain-rate ratios: each on run against the mean of the off runs of its kind."""

    def rate(key: str, figure: str = "commands_per_s") -> float | None:
        value = suite.scenarios.get(key, {}).get(figure)
        return float(value) if value else None

    def mean(values: list[float | None]) -> float | None:
        known = [value for value in values if value]
        return sum(known) / len(known) if known else None

    ratios: dict[str, Any] = {}
    for kind, prefix in (("single", "12 taskline K=1 tracing"), ("bulk", "12 taskline bulk K=1 tracing")):
        off = mean([rate(f"{prefix} off #{r}") for r in (1, 2)])
        off_cpu = mean([rate(f"{prefix} off #{r}", "client_cpu_ms_per_command") for r in (1, 2)])
        for label in SAMPLED:
            on = mean([rate(f"{prefix} {label} #{r}") for r in (1, 2)])
            on_cpu = mean([rate(f"{prefix} {label} #{r}", "client_cpu_ms_per_command") for r in (1, 2)])
            if off and on and off_cpu and on_cpu:
                ratios[f"{kind} {label}"] = {
                    "off_per_s": off,
                    "on_per_s": on,
                    "rate_on_over_off": on / off,
                    "worker_cpu_ms_off": off_cpu,
                    "worker_cpu_ms_on": on_cpu,
                    "cpu_on_over_off": on_cpu / off_cpu,
                }
    return ratios
