"""Whether the standard OTEL_* environment asks a process to trace (docs/tracing.md).

taskline has no tracing setting of its own: OpenTelemetry's variables decide, and the SDK reads
the rest of them itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, OTEL_PROPAGATORS). Tracing is off unless one of these is set:

* `OTEL_TRACES_EXPORTER` to an exporter (`otlp`, `console`); `none` keeps it off;
* `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP is then implied);

and `OTEL_SDK_DISABLED=true` turns it off whatever else is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["ENDPOINT_VARIABLES", "EXPORTER_VARIABLE", "SUPPORTED_EXPORTERS", "traces_exporter"]

EXPORTER_VARIABLE: Final = "OTEL_TRACES_EXPORTER"
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SUPPORTED_EXPORTERS: Final = ("otlp", "console")


def traces_exporter(environ: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for (`otlp`, `console`, or an unsupported name the
    caller reports), or None: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get(EXPORTER_VARIABLE, "").strip().lower()
    if named:
        first = named.split(",")[0].strip()
        return None if first in ("", "none") else first
    if any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES):
        return "otlp"
    return None
