"""The web page's parts without services: the SVG charts and who may change anything."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from starlette.requests import Request

from worker.web.auth import Access, Refusal
from worker.web.charts import Series, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_a_chart_is_well_formed_svg_with_a_line_per_run_and_a_gap_where_a_value_is_missing() -> None:
    now = 10_000.0
    points = [(now - 300, 1.0), (now - 200, 4.0), (now - 100, None), (now - 50, 2.0), (now - 10, 3.0)]
    root = ET.fromstring(line_chart("Commands <per> second", [Series("rate", points)], now=now))
    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f"{SVG}polyline")) == 2
    assert root.attrib["aria-label"] == "Commands <per> second"  # escaped in the markup, intact when parsed
    assert all("style" not in element.attrib for element in root.iter())  # nothing a strict CSP would block


def test_an_empty_chart_says_so_and_old_points_are_left_out() -> None:
    now = 10_000.0
    root = ET.fromstring(line_chart("Latency", [Series("p95", [(now - 7200, 5.0)])], unit="s", now=now))
    assert root.findall(f"{SVG}polyline") == []
    assert any(text.text == "no samples yet" for text in root.iter(f"{SVG}text"))


def _request(method: str = "POST", **headers: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/actions/replay",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "page:8000", **headers}.items()],
    }
    return Request(scope)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_without_a_password_nothing_can_be_changed() -> None:
    access = Access("admin", None)
    with pytest.raises(Refusal, match="TASKLINE_WEB_PASSWORD") as refused:
        access.check_change(_request(authorization=_basic("admin", "")), access.csrf_token())
    assert refused.value.status == 403


def test_a_change_needs_the_credentials_a_same_site_origin_and_the_csrf_token() -> None:
    access = Access("admin", "s3cret")
    token = access.csrf_token()
    good = _basic("admin", "s3cret")
    with pytest.raises(Refusal) as anonymous:
        access.check_change(_request(), token)
    assert anonymous.value.status == 401
    with pytest.raises(Refusal) as wrong:
        access.check_change(_request(authorization=_basic("admin", "guess")), token)
    assert wrong.value.status == 401
    with pytest.raises(Refusal, match="another site"):
        access.check_change(_request(authorization=good, origin="https://evil.example"), token)
    with pytest.raises(Refusal, match="CSRF"):
        access.check_change(_request(authorization=good, origin="http://page:8000"), None)
    with pytest.raises(Refusal, match="CSRF"):
        access.check_change(_request(authorization=good), "0" * 64)
    access.check_change(_request(authorization=good, origin="http://page:8000"), token)


def test_the_csrf_token_is_per_process_and_per_credentials() -> None:
    assert Access("admin", "a").csrf_token() != Access("admin", "a").csrf_token()
    one = Access("admin", "a")
    assert one.csrf_token() == one.csrf_token()
