"""The published static site (benchmark.report.site, ``alcbench publish``): self-contained pages whose
every link and image resolves, and, in a real headless Chromium, sortable and filterable tables
and a phone layout that keeps the AUC column on screen."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.results.plots import safe_name

DATASETS = ("cifar10h[n=300,temperature=10]", "cifar10h[n=300,temperature=2]")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site published from two datasets (given T=10 first) run with posteriors files, and a
    third group whose learner cannot run here (no images)."""
    root = tmp_path_factory.mktemp("site")
    out = root / "results"
    for spec in DATASETS:
        task = registry.create("dataset", spec).load()
        probs = root / f"{spec}.npy"
        np.save(probs, (0.5 * task.true_dist + 0.05).astype(np.float32))
        args = ["run", "--dataset", spec, "--posteriors", str(probs), "--seeds", "0-2", "--out", str(out)]
        for strategy in ("random", "oracle", "loss", "entropy", "eq2"):
            args += ["--strategy", strategy]
        assert main([*args, "--no-progress"]) == 0
    os.environ["ALCBENCH_DATA"] = str(root / "no-images")
    try:
        main(["run", "--dataset", "cifar10h[n=200]", "--learner", "smallcnn", "--strategy", "loss",
              "--seeds", "0", "--out", str(out), "--no-progress"])  # fmt: skip
    finally:
        os.environ.pop("ALCBENCH_DATA", None)
    assert main(["publish", str(out), "--site", str(root / "site")]) == 0
    return root / "site"


def _pages(site: Path) -> list[Path]:
    return sorted(site.glob("*.html"))


def _references(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return re.findall(r'(?:src|href)="([^"]+)"', text)


def test_every_link_and_image_resolves_inside_the_site(site: Path) -> None:
    pages = _pages(site)
    assert {p.name for p in pages} >= {"index.html", "skipped.html"}
    assert len([p for p in pages if p.name.startswith("group-")]) == 2
    check_references_resolve(site)


def check_references_resolve(site: Path) -> None:
    """Every link and image of every page is a file inside the site."""
    for page in _pages(site):
        for ref in _references(page):
            assert not ref.startswith(("http:", "https:", "//")), f"{page.name} reaches the network: {ref}"
            target = (page.parent / unquote(urlparse(ref).path)).resolve()
            assert target.is_file(), f"{page.name}: {ref} does not resolve"
            assert site.resolve() in target.parents, f"{page.name}: {ref} leaves the site"


def test_index_orders_groups_numerically_and_lists_what_did_not_run(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    first, second = (index.index(f"{spec} — learner") for spec in reversed(DATASETS))
    assert first < second  # temperature=2 before temperature=10, although run second
    assert "Not run, and why" in index and "cifar10h[n=200,temperature=2]" in index
    # each card's headline: the best strategy besides the oracle, with AUC and efficiency
    cards = re.findall(r'<div class="card">(.*?)</div></div>', index)
    assert len(cards) == 2
    assert all("best: " in c and "× Random" in c and "oracle" not in c.split("best: ")[1] for c in cards)
    footer = index.split("<footer>")[1]
    assert "commit" in footer and "numpy" in footer and "CPU cores" in footer


def test_figures_come_with_svg_and_pdf(site: Path) -> None:
    for png in (site / "plots").glob("*.png"):
        assert png.with_suffix(".svg").is_file() and png.with_suffix(".pdf").is_file()


def test_skipped_page_gives_the_full_reasons(site: Path) -> None:
    text = (site / "skipped.html").read_text(encoding="utf-8")
    assert "cifar10h[n=200,temperature=2] / smallcnn" in text and "<pre>" in text


def test_same_results_give_the_same_site(site: Path, tmp_path: Path) -> None:
    results = site.parent / "results"
    again = tmp_path / "again"
    assert main(["publish", str(results), "--site", str(again)]) == 0
    for page in _pages(site):
        assert (again / page.name).read_bytes() == page.read_bytes(), page.name


def test_a_group_no_longer_in_the_results_loses_its_page_and_figures(site: Path, tmp_path: Path) -> None:
    """Published again after one dataset's runs are gone, the site keeps no page or figure of it
    (the earlier report's figures of it are removed as well)."""
    import pandas as pd

    results = tmp_path / "results"
    shutil.copytree(site.parent / "results", results)
    again = tmp_path / "site"
    shutil.copytree(site, again)
    gone = DATASETS[0]
    stale = [p for p in again.rglob("*") if p.is_file() and safe_name(gone) in p.name]
    assert any(p.suffix == ".html" for p in stale) and any(p.suffix == ".png" for p in stale)
    runs = pd.read_parquet(results / "runs.parquet")
    runs[runs["dataset"] != gone].to_parquet(results / "runs.parquet")
    assert main(["publish", str(results), "--site", str(again)]) == 0
    assert not any(p.exists() for p in stale)
    assert not [p for p in (results / "plots").iterdir() if safe_name(gone) in p.name]
    assert [p for p in (again / "plots").iterdir() if safe_name(DATASETS[1]) in p.name]
    assert len([p for p in _pages(again) if p.name.startswith("group-")]) == 1
    check_references_resolve(again)


# --------------------------------------------------------------------------- in a real browser


def _browser():
    """A headless Chromium driven through Selenium, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)")
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def _open(browser, page: Path, width: int = 1280, height: int = 900) -> None:
    browser.set_window_size(width, height)
    browser.get(page.resolve().as_uri())
    browser.get_log("browser")  # what earlier pages logged


def test_pages_load_without_console_errors_and_every_image_renders(site: Path, browser) -> None:
    for page in _pages(site):
        browser.set_window_size(1280, 900)
        browser.get_log("browser")
        browser.get(page.resolve().as_uri())
        broken = browser.execute_script(
            "return Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"{page.name}: {errors}"
        assert not broken, f"{page.name}: images that did not load: {broken}"


def _column(browser, header: str) -> list[str]:
    return browser.execute_script(
        """const t = document.getElementById('leaderboard');
           const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === arguments[0]);
           return Array.from(t.tBodies[0].rows).filter(r => !r.classList.contains('hidden'))
                       .map(r => r.cells[i].getAttribute('data-value') ?? r.cells[i].textContent);""",
        header,
    )


def test_clicking_a_header_sorts_and_the_filter_hides_rows(site: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    group = next(p for p in _pages(site) if p.name.startswith("group-") and "temperature_2" in p.name)
    _open(browser, group)
    header = browser.find_element(By.XPATH, "//table[@id='leaderboard']//th[text()='AUC']")
    header.click()
    ascending = [float(v) for v in _column(browser, "AUC")]
    assert ascending == sorted(ascending) and len(ascending) == 5
    header.click()
    assert [float(v) for v in _column(browser, "AUC")] == sorted(ascending, reverse=True)
    browser.find_element(By.XPATH, "//th[text()='strategy']").click()
    names = _column(browser, "strategy")
    assert names == sorted(names, key=str.lower)
    box = browser.find_element(By.CSS_SELECTOR, "input.filter[data-table='leaderboard']")
    box.send_keys("eq2")
    assert _column(browser, "strategy") == ["eq2[hinge=None]"]  # eq2 as typed: its canonical spec
    box.clear()
    box.send_keys(" ")  # an empty query shows every row again
    assert len(_column(browser, "strategy")) == 5


def test_phone_width_keeps_the_auc_column_on_screen(site: Path, browser) -> None:
    for page in [site / "index.html", *[p for p in _pages(site) if p.name.startswith("group-")]]:
        _open(browser, page, width=390, height=844)
        inner, scroll = browser.execute_script(
            "return [window.innerWidth, document.documentElement.scrollWidth]"
        )
        assert scroll <= inner, f"{page.name} scrolls sideways at {inner} px ({scroll} px wide)"
        if page.name.startswith("group-"):
            right = browser.execute_script(
                """const h = Array.from(document.querySelectorAll('#leaderboard th'))
                                 .find(c => c.textContent === 'AUC');
                   return h.getBoundingClientRect().right;"""
            )
            assert 0 < right <= inner


@pytest.mark.skipif(not os.environ.get("ALCBENCH_SITE"), reason="set ALCBENCH_SITE to a published site")
def test_screenshots_of_a_published_site(browser) -> None:
    """``make screenshots``: the index and one group page of ``$ALCBENCH_SITE`` at desktop and
    phone widths, written to its ``screenshots/`` folder."""
    site = Path(os.environ["ALCBENCH_SITE"])
    group = sorted(site.glob("group-*.html"))[0]
    folder = site / "screenshots"
    folder.mkdir(exist_ok=True)
    for page, name in ((site / "index.html", "index"), (group, "group")):
        for width, height, device in ((1280, 1000, "desktop"), (390, 844, "phone")):
            _open(browser, page, width, height)
            path = folder / f"{name}-{device}.png"
            assert browser.save_screenshot(str(path)) and path.stat().st_size > 0
