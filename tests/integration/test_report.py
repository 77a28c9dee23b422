"""`distillwatch report` on a day of data: one self-contained file under 5 MB that headless
Chromium renders with no console errors and no network requests, every plot present and
drawn (checked in the DOM and in screenshots that are not blank)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.integration.chromium import inspect_page, require_chromium

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
PLOTS = ("reliability", "heatmap", "timelines", "fallback", "freshness", "latency")
ROWS = 300_000

FILL = """
import sys, time
from datetime import UTC, datetime
from bench.forensics_data import World, fill
from streams.clickhouse import open_store
from streams.migrations import migrate
rows = int(sys.argv[2])
start = datetime.fromtimestamp((int(time.time()) // 3600 - 24) * 3600, UTC)
with open_store(sys.argv[1], owner="test_report fill") as store:
    migrate(store)
    if rows:
        fill(store, World(start, 24 * 3600, rows))
"""

PROBE = """(() => {
  const plots = [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.id, svg: !!svg, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('path, use, rect, line, polyline, polygon, image').length : 0,
            label: svg ? svg.getAttribute('aria-label') : ''};
  });
  return {plots, alertRows: document.querySelectorAll('#alerts-table tr').length - 1,
          cards: document.querySelectorAll('.card').length,
          scripts: document.querySelectorAll('script').length,
          external: [...document.querySelectorAll('[src], [href]')]
              .map(e => e.getAttribute('src') || e.getAttribute('href'))
              .filter(u => !u.startsWith('data:') && !u.startsWith('#'))};
})()"""


def _env(tmp: Path, dsn: str) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO_ROOT), "DISTILLWATCH_CLICKHOUSE__DSN": dsn,
            "DISTILLWATCH_DATA_DIR": str(tmp / "data"), "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp), "MPLCONFIGDIR": str(tmp / "mpl")}


def _report(tmp: Path, rows: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    dsn = f"chdb://{tmp}/ch"
    env = _env(tmp, dsn)
    fill = subprocess.run([sys.executable, "-c", FILL, dsn, str(rows)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert fill.returncode == 0, fill.stderr[-2000:]
    out = tmp / "report.html"
    # The data spans the 24 whole hours before the fill; 26h (not 25h) keeps all of it in scope
    # when the report runs after the next hour boundary (seen in CI: 46 rows fell out at 25h).
    done = subprocess.run([sys.executable, "-m", "distillwatch", "report", "--since", "26h", "--out", str(out)],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    return out, done


@pytest.fixture(scope="module")
def day_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out, done = _report(tmp_path_factory.mktemp("report"), ROWS)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{ROWS + ROWS // 100}" not in done.stdout  # the relabelled copies are not counted twice
    assert f"{ROWS} requests" in done.stdout and "4 alerts" in done.stdout
    yield out


def test_a_day_of_data_gives_one_small_self_contained_file(day_report: Path) -> None:
    html = day_report.read_text(encoding="utf-8")
    assert day_report.stat().st_size <= 5 * 1024 * 1024
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", html, re.I)
    assert not re.search(r"url\((?!['\"]?(?:data:|#))", html)
    for name in PLOTS:
        assert f'id="plot-{name}"' in html
    assert html.count('id="alerts-table"') == 1


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def _drawn(png: bytes) -> float:
    """Share of pixels that differ from the most common (background) value."""
    px = _pixels(png).astype(np.uint8).ravel()
    return float(np.mean(px != np.bincount(px).argmax()))


def test_renders_in_headless_chromium_with_every_plot_drawn(day_report: Path) -> None:
    page = inspect_page(require_chromium(), day_report.as_uri(), PROBE, clip_selector="figure.plot")
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith(("file:", "data:"))] == []
    probe = page.probe
    assert probe["scripts"] == 0 and probe["external"] == []
    assert probe["alertRows"] == 4 and probe["cards"] == 6
    plots = {p["id"]: p for p in probe["plots"]}
    assert sorted(plots) == sorted(f"plot-{n}" for n in PLOTS)
    for name, p in plots.items():
        assert p["svg"] and p["width"] > 300 and p["height"] > 150, (name, p)
        assert p["marks"] > 40, (name, p)
        assert p["label"] and "no data" not in p["label"], name
    whole = _pixels(page.screenshot)
    assert whole.shape[0] > 2000 and whole.std() > 20  # a long page with content, not one colour
    assert sorted(page.clips) == sorted(plots)
    for name, png in page.clips.items():
        assert _pixels(png).std() > 10, name
        assert _drawn(png) > 0.03, name


def test_an_empty_store_still_gives_a_report_that_says_so(tmp_path: Path) -> None:
    out, done = _report(tmp_path, 0)
    assert done.returncode == 0, done.stderr[-2000:]
    page = inspect_page(require_chromium(), out.as_uri(), PROBE)
    assert page.errors == []
    labels = {p["id"]: p["label"] for p in page.probe["plots"]}
    assert labels == {f"plot-{n}": "no data in this period" for n in PLOTS}
    assert "No alert was active" in out.read_text(encoding="utf-8")


def test_report_data_through_the_monitors_api(tmp_path: Path) -> None:
    """While the monitor holds the store the report reads through its HTTP API, where values
    arrive as JSON (times as text): the same numbers as read directly."""
    import threading
    from datetime import UTC, datetime, timedelta

    from prometheus_client import CollectorRegistry

    from bench.forensics_data import World, fill
    from streams import forensics
    from streams.clickhouse import open_store
    from streams.http_api import make_handler, serve
    from streams.migrations import migrate
    from streams.report.queries import collect
    from streams.report.render import render_html
    from streams.sql import _via_api, check_read_only, read_settings
    from tests.integration.pipeline_support import free_port

    start = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 3600 - 6) * 3600, UTC)
    scope = forensics.Scope(start - timedelta(hours=1), start + timedelta(hours=6))
    with open_store(f"chdb://{tmp_path}/ch", owner="test_report api") as store:
        migrate(store)
        fill(store, World(start, 6 * 3600, 20_000))
        port = free_port()
        server = serve("127.0.0.1", port, make_handler(store, threading.Lock(), CollectorRegistry(),
                                                        lambda: (True, "ok")))
        try:
            api = collect(lambda sql, p: _via_api(check_read_only(sql), p, f"http://127.0.0.1:{port}", 100_000),
                          scope, [60, 3600], window_s=3600)  # the synthetic metrics are hourly
        finally:
            server.shutdown()

        class Direct:
            def __init__(self, result: object) -> None:
                self.columns = list(result.column_names)  # type: ignore[attr-defined]
                self.rows = result.result_rows  # type: ignore[attr-defined]
                self.via = "store"

        direct = collect(lambda sql, p: Direct(store.query(check_read_only(sql), parameters=p,
                                                           settings=read_settings(100_000))), scope, [60, 3600],
                         window_s=3600)
    assert _same(api.summary, direct.summary) and api.summary["requests"] == 20_000
    assert [a["starts_at"] for a in api.alerts] == [a["starts_at"] for a in direct.alerts]
    assert [r["hour"] for r in api.fallback] == [r["hour"] for r in direct.fallback]
    assert api.heatmap.values == direct.heatmap.values and _same(api.calibration, direct.calibration)
    html = render_html(api)
    assert html.count('class="plot"') == len(PLOTS) and "no data in this period" not in html


def _same(a: object, b: object) -> bool:
    """Equal, floats to 1e-12: ClickHouse's threads add float sums (spend, mean confidence)
    in any order, so two reads of the same rows can differ in the last digits."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
