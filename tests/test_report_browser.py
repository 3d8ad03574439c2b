"""report.html and `selfhood serve` in a real headless browser.

Debian's chromium (scripts/install-system.sh installs it), driven by
Playwright from PyPI with `executable_path`: no browser download. Each test
writes its screenshots into its pytest tmp dir and prints the paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: run scripts/install-system.sh"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    return page, problems


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfhood", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real runs (one with faults that fork eventual) and one hostile hand-made run."""
    cwd = tmp_path_factory.mktemp("browser")
    assert _run("run", "-q", "--time-limit", "3", cwd=cwd).returncode == 0
    p = _run("run", "-q", "--time-limit", "2", "--nemesis", "pause", "--name", "paused",
             cwd=cwd)
    assert p.returncode in (0, 1), p.stderr
    _hostile_run(cwd / "store" / "hostile" / "20000101T000000Z")
    return cwd / "store"


EVIL = "<script>window.__pwned = 1</script>"


def _hostile_run(d: Path) -> None:
    """A run whose transcript turns are markup: they must show as text, never run."""
    from selfhood.report.html import write_report_html

    (d / "eventual").mkdir(parents=True)
    key = "<img src=x onerror=window.__pwned=2>/transcript"
    ops: list[dict[str, Any]] = []

    def op(typ: str, p: int, value: Any, ms: int, node: str) -> None:
        ops.append({"index": len(ops), "time": ms * 1_000_000, "type": typ, "process": p,
                    "f": "txn", "value": value, "node": node, "instance": "i0"})

    for typ, p, v, ms, node in (
            ("invoke", 0, [["append", key, EVIL]], 1, "r0"),
            ("ok", 0, [["append", key, EVIL]], 2, "r0"),
            ("invoke", 1, [["append", key, "hello"]], 1, "r1"),
            ("ok", 1, [["append", key, "hello"]], 2, "r1"),
            ("invoke", 0, [["r", key, None]], 3, "r0"),
            ("ok", 0, [["r", key, [EVIL, "hello"]]], 4, "r0"),
            ("invoke", 1, [["r", key, None]], 5, "r1"),
            ("ok", 1, [["r", key, ["hello", EVIL]]], 6, "r1")):
        op(typ, p, v, ms, node)
    (d / "eventual" / "history.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ops))
    mode = {"valid": True, "availability": 1.0, "latency_ms": {"p50": 1.0, "p99": 1.0},
            "anomalies": {}, "staleness": {"k_max": 0, "t_p99_ms": 0.0},
            "identity": {"instances": 1, "fingerprints_agree": 0, "forks": 1,
                         "forgotten_acks": 0, "revived_rules": 0, "torn_memory": 0,
                         "converged": False, "convergence_ms": None}, "checks": []}
    (d / "results.json").write_text(json.dumps(
        {"spec": {"name": "hostile"}, "seed": 1, "modes": {"eventual": mode}}))
    write_report_html(d)


def test_report_page_shows_every_plot_and_the_identity_panel(browser: Any, store: Path,
                                                             tmp_path: Path) -> None:
    report = (store / "latest" / "report.html").resolve()
    page, problems = _page(browser)
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    for mode in ("sequential", "eventual"):
        sec = page.locator(f"#mode-{mode}")
        for plot in ("latency", "availability", "staleness"):
            svg = sec.locator(f".plot.{plot} svg")
            assert svg.is_visible()
            box = svg.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
        panel = page.locator(f"#identity-{mode}")
        assert panel.is_visible()
        assert panel.locator(".verdict").inner_text().startswith("same instance:")
        assert panel.locator("table.fingerprints tr").count() == 1 + 4  # header + instances
    assert "same instance: no:" in page.locator("#identity-eventual .verdict").inner_text()
    assert page.locator("#identity-eventual .fork > div").count() == 2
    assert page.locator("svg.cycle").count() >= 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert problems == []


def test_script_turn_renders_as_text(browser: Any, store: Path, tmp_path: Path) -> None:
    page, problems = _page(browser)
    page.goto((store / "hostile" / "20000101T000000Z" / "report.html").resolve().as_uri())
    page.wait_for_load_state("load")
    turns = page.locator("#identity-eventual .fork li").all_inner_texts()
    assert EVIL in turns and "hello" in turns
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    shot = tmp_path / "hostile.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert problems == []


@pytest.fixture
def server(store: Path) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "selfhood", "serve", str(store),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield line.split()[2]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_browser_lists_runs_opens_a_report_and_compares_two(browser: Any, server: str,
                                                            tmp_path: Path) -> None:
    page, problems = _page(browser)
    page.goto(server)
    rows = page.locator("#runs tr.run")
    keys = [rows.nth(i).get_attribute("data-key") for i in range(rows.count())]
    assert any(k and k.startswith("default/") for k in keys)
    assert any(k and k.startswith("paused/") for k in keys)
    assert any(k == "hostile/20000101T000000Z" for k in keys)
    page.screenshot(path=str(tmp_path / "browser.png"), full_page=True)
    # one click opens a report
    page.locator('#runs tr.run[data-key^="default/"] a.open').click()
    page.wait_for_load_state("load")
    assert page.locator("#identity-sequential").is_visible()
    page.go_back()
    # A = paused, B = default: the comparison table and both reports side by side
    page.locator('#runs tr.run[data-key^="paused/"] input[name=a]').check()
    page.locator('#runs tr.run[data-key^="default/"] input[name=b]').check()
    page.locator("#compare-button").click()
    page.wait_for_load_state("load")
    table = page.locator("#comparison")
    assert table.is_visible()
    text = table.inner_text()
    assert "availability" in text and "sequential" in text and "eventual" in text
    for side in ("report-a", "report-b"):
        frame = page.frame_locator(f"#{side}")
        assert frame.locator("#summary").is_visible()
    shot = tmp_path / "compare.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshots: {tmp_path / 'browser.png'}, {shot}")
    assert problems == []
