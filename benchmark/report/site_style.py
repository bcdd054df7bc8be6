"""The stylesheet and script every page of the static site (:mod:`benchmark.report.site`) carries:
``assets/site.css`` (the layout, with a narrow-screen layout below :data:`NARROW_PX`) and
``assets/site.js`` (sortable tables, filter boxes). Plain text, no CDN, no external font."""

from __future__ import annotations

#: The screen width (px) below which the optional table columns hide (the ``@media`` rule of :data:`CSS`).
NARROW_PX = 700

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --bg-alt: #f6f6f8; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  margin: 0; line-height: 1.45; }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1rem; }
header nav a { margin-right: 1rem; }
a { color: var(--accent); }
h1 { font-size: 1.6rem; margin: 0.4rem 0; overflow-wrap: anywhere; }
h2, h3 { overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
p.note { color: var(--muted); max-width: 60rem; font-size: 0.92rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: 0.8rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 0.7rem 0.9rem; }
.card h3 { font-size: 1rem; margin: 0 0 0.3rem; overflow-wrap: anywhere; }
.card .big { font-size: 1.35rem; font-variant-numeric: tabular-nums; white-space: nowrap; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.88rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.3rem 0.5rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg-alt); position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: var(--muted); font-size: 0.8em; }
th[aria-sort="ascending"]::after { content: " \\2191"; }
th[aria-sort="descending"]::after { content: " \\2193"; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.name { overflow-wrap: anywhere; min-width: 16rem; }
tr.hidden { display: none; }
input.filter { font: inherit; padding: 0.3rem 0.5rem; width: min(24rem, 100%); margin: 0.3rem 0; }
figure { margin: 1rem 0; }
figure img { width: 100%; max-width: 1100px; height: auto; border: 1px solid var(--line); }
main img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.85rem; }
footer { color: var(--muted); font-size: 0.8rem; border-top: 1px solid var(--line); margin-top: 3rem;
  padding-top: 0.8rem; padding-bottom: 2rem; }
ul.reasons li { margin-bottom: 0.4rem; }
@media (max-width: 700px) {
  .opt { display: none; }
  table { font-size: 0.8rem; }
  th, td { padding: 0.25rem 0.3rem; }
  td.name { min-width: 7rem; }
  header nav a { display: inline-block; margin-bottom: 0.3rem; }
}
"""

JS = """
(function () {
  function value(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (!numeric) { return raw.toLowerCase(); }
    var v = parseFloat(raw);
    return isNaN(v) ? Infinity : v;
  }
  function sortBy(table, index, th) {
    var numeric = th.classList.contains("num");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index], numeric), y = value(b.cells[index], numeric);
      if (x < y) { return ascending ? -1 : 1; }
      if (x > y) { return ascending ? 1 : -1; }
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.classList.add("sortable");
      th.setAttribute("title", "sort by this column");
      th.addEventListener("click", function () { sortBy(table, index, th); });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.classList.toggle("hidden", q !== "" && r.textContent.toLowerCase().indexOf(q) < 0);
      });
    });
  });
})();
"""
