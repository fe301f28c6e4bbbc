"""The rendered leaderboard page in a real browser (headless Chromium via selenium and
chromedriver): the rows are there, clicking a header sorts them, and the page's inline script
runs under its own Content-Security-Policy without console errors.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the pip package ``selenium``;
skipped (with the reason) only when Chromium itself is not installed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from leaderboard.board import Board
from leaderboard.render import render
from tests.test_leaderboard_render import REPORTED, add_entry, results_doc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                "(apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    board = Board(tmp_path_factory.mktemp("board"))
    for model, mean, std in [("mo3enet", 0.12, 0.01), ("blur-0.3", 0.3, 0.0), ("Identity", 0.0, 0.0),
                             ("blur-0.1", 0.1, 0.0)]:
        add_entry(board, results_doc(model, mean, std), "https://example.org/" + model)
    add_entry(board, results_doc("cm-mlp", 1.7, 0.05, task="qm9", seeds=5))
    render(board)
    return board.page


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("Chromium is installed but selenium is not: pip install selenium==4.51.0")
    assert CHROMEDRIVER, "Chromium is installed but chromedriver is not: apt-get install -y chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def column(drv, task: str, index: int) -> list[str]:
    """Text of column ``index`` (0-based) of every body row of a table (``task``: its section,
    ``task`` or ``task/variant``)."""
    from selenium.webdriver.common.by import By

    rows = drv.find_elements(By.CSS_SELECTOR, f'table[data-section="{task}"] tbody tr')
    return [r.find_elements(By.TAG_NAME, "td")[index].text for r in rows]


def header(drv, task: str, label: str):
    from selenium.webdriver.common.by import By

    heads = drv.find_elements(By.CSS_SELECTOR, f'table[data-section="{task}"] thead th')
    return next(h for h in heads if h.text.strip().startswith(label))


def test_rows_and_sorting_in_chromium(driver, page):
    from selenium.webdriver.common.by import By

    driver.get(page.as_uri())
    assert driver.title == "densegen leaderboard"
    task = "pointcloud-reconstruction/with-h"  # the default variant's table (heavy-atoms has none here)
    # rendered order: rank by the metric (lower is better)
    assert column(driver, task, 1) == ["Identity", "blur-0.1", "mo3enet", "blur-0.3"]
    assert column(driver, task, 0) == ["1", "2", "3", "4"]

    header(driver, task, "model").click()  # text, case-insensitive, ascending
    assert column(driver, task, 1) == ["blur-0.1", "blur-0.3", "Identity", "mo3enet"]
    assert header(driver, task, "model").get_attribute("aria-sort") == "ascending"
    header(driver, task, "model").click()  # again: descending
    assert column(driver, task, 1) == ["mo3enet", "Identity", "blur-0.3", "blur-0.1"]
    assert header(driver, task, "model").get_attribute("aria-sort") == "descending"

    header(driver, task, "rank").click()  # numeric ascending, not "1" < "10" < "2" text order
    assert column(driver, task, 0) == ["1", "2", "3", "4"]
    header(driver, task, "rank").click()
    assert column(driver, task, 0) == ["4", "3", "2", "1"]

    # qm9: reported reference rows are marked, sort with the entry by value, and go last by rank
    qm9 = "qm9"
    ranks = column(driver, qm9, 0)
    assert ranks.count("reported") == len(REPORTED) and ranks.count("1") == 1
    header(driver, qm9, "avg_mae").click()
    header(driver, qm9, "avg_mae").click()  # descending: worst first
    values = [float(v.split(" ")[0]) for v in column(driver, qm9, 2)]
    assert values == sorted(values, reverse=True) and values[0] == max(r["avg_mae"] for r in REPORTED.values())
    header(driver, qm9, "rank").click()
    assert column(driver, qm9, 0)[0] == "1" and set(column(driver, qm9, 0)[1:]) == {"reported"}

    assert len(driver.find_elements(By.CSS_SELECTOR, 'section#task-qm9 svg.chart g.bar')) == len(REPORTED) + 1
    for table in driver.find_elements(By.CSS_SELECTOR, "table.sortable"):  # every row fills the header's columns
        n_cols = len(table.find_elements(By.CSS_SELECTOR, "thead th"))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr.entry, tbody tr.reported")
        widths = {len(r.find_elements(By.TAG_NAME, "td")) for r in rows}
        assert not rows or widths == {n_cols}, (table.get_attribute("data-task"), widths, n_cols)
    # the numbers a reader sees are the entries' numbers (mean ± std of the primary metric, seeds)
    shown = {(m, v) for m, v in zip(column(driver, task, 1), column(driver, task, 2))}
    expected = set()
    for path in Board(page.parent.parent).entry_files():
        entry = json.loads(path.read_text())
        if f"{entry['task']}/{entry['results']['task']['variant']}" != task:
            continue
        agg = entry["results"]["metrics"]["aggregate"]["penalized_mean_deviation"]
        expected.add((entry["results"]["model"]["name"], f"{agg['mean']:.5g} ± {agg['std']:.5g}"))
    assert shown == expected
    assert column(driver, task, 3) == ["1"] * 4
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # e.g. a Content-Security-Policy refusal of the inline script
