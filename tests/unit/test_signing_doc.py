"""docs/signing.md's worked example (key, zeroed job, MAC, signed job) is what both clients
compute and what the worker verifies: a service that follows the doc signs correctly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from taskline_producer import SigningKey
from taskline_producer.signing import job_mac
from taskline_producer.wire import envelope

from tests.node_producer import node_json
from worker.config.signing_keys import parse_signing_keys
from worker.pipeline.decode import Decoder, Delivery
from worker.pipeline.signatures import Verifier

DOC = Path(__file__).resolve().parents[2] / "docs" / "signing.md"
START, END = "<!-- signing-example:start -->", "<!-- signing-example:end -->"
ENQUEUED_MS = 1765099800000


def example() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(START) == 1, f"{DOC} has no (or several) {START} markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    key_id, secret = re.search(r"key id `([^`]+)`, secret `([^`]+)`", block).groups()  # type: ignore[union-attr]
    zeroed, job = re.findall(r"```json\n\s*(.*?)\n\s*```", block, re.S)
    mac = re.search(r"the MAC: `([0-9a-f]{64})`", block).group(1)  # type: ignore[union-attr]
    command = json.loads(job)["a"][0]
    return {"key_id": key_id, "secret": secret, "zeroed": zeroed, "job": job, "mac": mac, "command": command}


def test_the_docs_mac_and_job_are_what_the_python_producer_computes() -> None:
    """The MAC of the zeroed job, and the whole signed job, byte for byte."""
    doc = example()
    key = SigningKey.of(doc["key_id"], doc["secret"])
    assert job_mac(key.secret, doc["zeroed"].encode()) == doc["mac"]
    assert doc["job"] == doc["zeroed"].replace("0" * 64, doc["mac"])
    assert envelope("create_task", doc["command"], ENQUEUED_MS, None, key).decode() == doc["job"]


def test_the_docs_job_verifies_in_the_worker() -> None:
    """The example job, as the doc prints it, is applied by a worker requiring signatures with that key."""
    doc = example()
    verifier = Verifier(parse_signing_keys({doc["key_id"]: {"secret": doc["secret"]}}), required=True)
    delivery = Decoder(65536, 1 << 20, verifier)(doc["job"].encode())["a"][0]
    assert isinstance(delivery, Delivery)
    assert delivery.signed_by == doc["key_id"]


def test_the_docs_job_is_what_the_typescript_producer_computes() -> None:
    """The TypeScript client writes the same signed job from the same command."""
    doc = example()
    script = """
    import { readFileSync } from "node:fs";
    import * as wire from "./dist/wire.js";
    const doc = JSON.parse(readFileSync(0, "utf8"));
    const key = { keyId: doc.key_id, secret: doc.secret };
    console.log(JSON.stringify({ job: wire.envelope("create_task", doc.command, {}, doc.et, key) }));
    """
    assert node_json(script, stdin=json.dumps({**doc, "et": ENQUEUED_MS}))["job"] == doc["job"]
