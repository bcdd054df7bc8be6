"""The published static site (benchmark.report.site, ``alcbench publish``): self-contained pages whose
every link and image resolves, the index opening with the best strategy per setting, failed cells
grouped by reason, no machine's absolute path on any page, and, in a real headless Chromium,
sortable and filterable tables, tables that fit 1400 px and a phone layout (390 px) that keeps
rank, strategy, AUC and efficiency whole on screen.

``ALCBENCH_SITE=results/site`` checks the layout of that published site instead of the test's own;
``ALCBENCH_SCREENSHOTS=docs/screenshots`` saves the screenshots the layout test takes there
(otherwise into ``$ALCBENCH_SITE/screenshots``, or a temporary folder)."""

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
from benchmark.dataroot import user_cache_dir
from benchmark.report.site_skipped import machine_paths, scrub_paths
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
    groups = [p.name for p in _group_pages(site)]
    # temperature=2 before temperature=10, although run second
    assert [safe_name(spec) in name for spec in reversed(DATASETS) for name in groups] == [1, 0, 0, 1]
    assert "Not run, and why" in index and "cifar10h[n=200,temperature=2]" in index
    footer = index.split("<footer>")[1]
    assert "commit" in footer and "numpy" in footer and "CPU cores" in footer


def test_index_opens_with_the_best_strategy_per_setting_and_folds_the_terms(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    main_ = index.split("<main>")[1]
    assert main_.index('<table class="sortable" id="best">') < min(
        main_.index(marker) for marker in ("<h2>", "<figure>", "<details")
    )
    table = main_.split('id="best">')[1].split("</table>")[0]
    heads = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)
    assert heads == ["setting", "best strategy", "AUC", "vs Random"]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])
    assert len(rows) == 2
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        text = [re.sub(r"<[^>]+>", "", c) for c in cells]
        assert not text[1].startswith("oracle") and "±" in text[2] and "×" in text[3]
    assert '<details class="terms"><summary>Terms</summary>' in main_
    assert "Efficiency:" not in main_.split("<details")[0]  # the glossary is folded, below the headline


def test_figures_come_with_svg_and_pdf(site: Path) -> None:
    for png in (site / "plots").glob("*.png"):
        assert png.with_suffix(".svg").is_file() and png.with_suffix(".pdf").is_file()


def test_skipped_page_groups_the_cells_by_reason_with_relative_paths(site: Path) -> None:
    text = (site / "skipped.html").read_text(encoding="utf-8")
    entries = re.findall(r'<li id="reason-\d+">(.*?)</details></li>', text, re.S)
    assert len(entries) == 1  # one cell, one reason
    assert "1 cell skipped</strong> in 1 setting: cifar10h[n=200,temperature=2] / smallcnn" in entries[0]
    assert "<pre>" in entries[0] and "<details><summary>the cell</summary>" in entries[0]
    # the data root the run searched (gone by now) and the user cache, named, not spelt out
    plain = re.sub(r"<[^>]+>", "", text)
    assert "&lt;data root&gt;/" in plain and "&lt;user cache&gt;/data/" in plain


def test_no_page_shows_a_machine_path(site: Path) -> None:
    check_no_machine_paths(site, extra=[site.parent])


def check_no_machine_paths(site: Path, extra: list[Path] = ()) -> None:  # type: ignore[assignment]
    """No page holds an absolute path of this machine: the data roots, the user cache, the
    project, the home and temporary folders, ``/work/...``."""
    project = Path(__file__).resolve().parents[1]
    places = [user_cache_dir(), project, Path.home(), Path("/tmp"), Path("/work"), *extra]
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert not machine_paths(text), f"{page.name}: {machine_paths(text)}"
        for place in places:
            found = re.search(r"(?<![\w.~/:-])" + re.escape(str(place)) + r"(?=/|[\s<\"']|$)", text)
            assert not found, f"{page.name} shows {found.group(0) if found else ''}"


def test_scrub_paths_rewrites_every_absolute_path_relative_to_a_named_place() -> None:
    prefixes = [("/home/ann/.cache/alcbench", "<user cache>"), ("/srv/proj", "<project>"),
                ("/home/ann", "~"), ("/tmp", "<tmp>")]  # fmt: skip
    error = (
        "NIH images not found. Looked for:\n"
        "  /mnt/big/data/noisy_pneumonia/nih/images\n  /mnt/big/data/nih/images\n"
        "  /home/ann/.cache/alcbench/data/noisy_pneumonia/nih/images\n"
        "  /home/ann/.cache/alcbench/data/nih/images\n"
        "Put them in <data root>/nih/; see https://nihcc.app.box.com/v/ChestXray-NIHCC."
    )
    assert scrub_paths(error, prefixes=prefixes) == (
        "NIH images not found. Looked for:\n"
        "  <data root>/noisy_pneumonia/nih/images\n  <data root>/nih/images\n"
        "  <user cache>/data/noisy_pneumonia/nih/images\n  <user cache>/data/nih/images\n"
        "Put them in <data root>/nih/; see https://nihcc.app.box.com/v/ChestXray-NIHCC."
    )
    # a file that is one candidate's tail and another's name: only the common prefix is a root
    mapping = (
        "Looked for:\n  /d/r/rsna/m.json\n  /d/r/m.json\n"
        "  /root/.cache/alcbench/data/rsna/m.json\n  /root/.cache/alcbench/data/m.json"
    )
    lines = scrub_paths(mapping, prefixes=[]).split("\n")
    assert lines[1:3] == ["  <data root>/rsna/m.json", "  <data root>/m.json"]
    assert "<user cache>/data/rsna/m.json" in scrub_paths(mapping, prefixes=[])  # another user's cache
    other = "in /srv/proj/benchmark/x.py, /home/ann/notes, /tmp/a/b, /work/shared/data/nih/images."
    assert scrub_paths(other, prefixes=prefixes) == (
        "in <project>/benchmark/x.py, ~/notes, <tmp>/a/b, …/nih/images."
    )
    # HTML: labels escaped; tags, relative paths, fractions and URLs left alone; idempotent
    page = '<pre>/tmp/x/y</pre><td>3/5 seeds</td> wrong / ambiguous <a href="plots/a.png">'
    scrubbed = scrub_paths(page, escaped=True, prefixes=prefixes)
    assert scrubbed == page.replace("/tmp/x/y", "&lt;tmp&gt;/x/y")
    assert scrub_paths(scrubbed, escaped=True, prefixes=prefixes) == scrubbed
    assert machine_paths(scrubbed, prefixes) == [] and machine_paths(page, prefixes) == ["/tmp/x/y"]


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


DESKTOP, PHONE = (1400, 1000), (390, 844)
#: Per page kind: the main table and the columns a phone keeps whole on screen.
MAIN_TABLES = {"index": ("best", ("setting", "AUC", "vs Random")),
               "group": ("leaderboard", ("rank", "strategy", "AUC", "efficiency"))}  # fmt: skip

_TABLE_METRICS = """
const t = document.getElementById(arguments[0]), wrap = t.parentElement;
const heads = Array.from(t.tHead.rows[0].cells);
const shown = c => getComputedStyle(c).display !== 'none';
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; };
const cells = {};
for (const name of arguments[1]) {
  const i = heads.findIndex(h => h.textContent === name);
  cells[name] = i < 0 ? null : Array.from(t.tBodies[0].rows).map(r => {
    const c = r.cells[i];
    return {shown: shown(c), box: box(c), scroll: c.scrollWidth, client: c.clientWidth, text: c.textContent,
            pieces: Array.from(c.querySelectorAll('span')).filter(shown).map(box)};
  });
}
return {inner: window.innerWidth, page: document.documentElement.scrollWidth,
        table: box(t), wrap: box(wrap), wrapScroll: wrap.scrollWidth, wrapClient: wrap.clientWidth,
        hidden: heads.filter(h => !shown(h)).map(h => h.textContent),
        heads: heads.filter(shown).map(h => [h.textContent, ...box(h)]), cells: cells};
"""


@pytest.fixture(scope="module")
def layout_site(request: pytest.FixtureRequest) -> Path:
    """``$ALCBENCH_SITE`` when set, else the test's own site."""
    env = os.environ.get("ALCBENCH_SITE")
    return Path(env) if env else request.getfixturevalue("site")


def _group_pages(site: Path) -> list[Path]:
    """The group pages in the index's order (the first is the one the screenshots show)."""
    index = (site / "index.html").read_text(encoding="utf-8")
    named = dict.fromkeys(re.findall(r'href="(group-[^"]+\.html)"', index))
    return [site / name for name in named]


def check_layout(browser, page: Path, kind: str) -> None:
    """At 1400 px the main table fits its container, every column shown; at 390 px the page does
    not scroll sideways and the phone's columns are whole on screen, their text not clipped."""
    table, keep = MAIN_TABLES[kind]
    _open(browser, page, *DESKTOP)
    m = browser.execute_script(_TABLE_METRICS, table, [])
    assert m["wrapScroll"] <= m["wrapClient"], f"{page.name}: #{table} overflows at 1400 px: {m}"
    assert m["table"][1] <= m["wrap"][1] + 0.5 and m["table"][1] <= m["inner"], (page.name, m["table"])
    assert not m["hidden"], f"{page.name}: columns hidden at 1400 px: {m['hidden']}"
    assert all(right <= m["wrap"][1] + 0.5 for _, _, right in m["heads"]), (page.name, m["heads"])
    assert m["page"] <= m["inner"], f"{page.name} scrolls sideways at 1400 px"

    _open(browser, page, *PHONE)
    m = browser.execute_script(_TABLE_METRICS, table, list(keep))
    assert m["page"] <= m["inner"], f"{page.name} scrolls sideways at 390 px ({m['page']} px wide)"
    assert m["wrapScroll"] <= m["wrapClient"], f"{page.name}: #{table} overflows at 390 px"
    for name in keep:
        assert m["cells"][name] is not None, f"{page.name}: no column {name!r}"
        for cell in m["cells"][name]:
            left, right = cell["box"]
            where = f"{page.name}: {name} cell {cell['text']!r} at 390 px"
            assert cell["shown"] and 0 <= left and right <= m["inner"], f"{where}: {left}..{right}"
            assert cell["scroll"] <= cell["client"], f"{where} is clipped: {cell}"
            assert all(left - 0.5 <= a and b <= right + 0.5 for a, b in cell["pieces"]), f"{where}: {cell}"


def _screenshot_folder(site: Path, tmp_path: Path) -> Path:
    env = os.environ.get("ALCBENCH_SCREENSHOTS")
    folder = Path(env) if env else site / "screenshots" if os.environ.get("ALCBENCH_SITE") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_tables_fit_desktop_and_phone_widths_with_screenshots(
    layout_site: Path, browser, tmp_path: Path
) -> None:
    """The index and every group page at 1400 × 1000 and 390 × 844 (:func:`check_layout`); the
    index and the first group page are captured at both sizes (``make screenshots``)."""
    site = layout_site
    groups = _group_pages(site)
    assert groups
    for page in [site / "index.html", *groups]:
        check_layout(browser, page, "index" if page.name == "index.html" else "group")
    check_no_machine_paths(site)
    folder = _screenshot_folder(site, tmp_path)
    for page, name in ((site / "index.html", "index"), (groups[0], "group")):
        for (width, height), device in ((DESKTOP, "desktop"), (PHONE, "phone")):
            _open(browser, page, width, height)
            path = folder / f"{name}-{device}.png"
            assert browser.save_screenshot(str(path)) and path.stat().st_size > 0
