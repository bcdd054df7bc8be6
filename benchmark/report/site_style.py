"""The stylesheet and script every page of the static site (:mod:`benchmark.report.site`) carries:
``assets/site.css`` (the layout, with a narrow-screen layout below :data:`NARROW_PX`) and
``assets/site.js`` (sortable tables, filter boxes). Plain text, no CDN, no external font."""

from __future__ import annotations

#: The screen width (px) below which the optional table columns hide (the ``@media`` rule of :data:`CSS`).
NARROW_PX = 700

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --bg-alt: #f6f6f8; --accent: #1f5fbf; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  margin: 0; line-height: 1.45; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 1rem; }
main > * { min-width: 0; max-width: 100%; }
header { padding-top: 1rem; }
header nav a { margin-right: 1rem; }
a { color: var(--accent); }
h1 { font-size: 1.6rem; margin: 0.4rem 0; overflow-wrap: anywhere; }
h2, h3 { overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--bg-alt); padding: 0.5rem 0.7rem;
  border-radius: 6px; font-size: 0.82rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
p.lead { max-width: 60rem; margin: 0.6rem 0 0.2rem; }
p.note { color: var(--muted); max-width: 60rem; font-size: 0.92rem; }
details.terms { margin: 0.6rem 0; max-width: 60rem; }
details.terms summary, details summary { cursor: pointer; color: var(--accent); }
details.terms p.note { margin: 0.3rem 0 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(17rem, 100%), 1fr)); gap: 0.8rem; }
.card { min-width: 0; overflow-wrap: anywhere; border: 1px solid var(--line); border-radius: 8px;
  padding: 0.7rem 0.9rem; }
.card h3 { font-size: 1rem; margin: 0 0 0.3rem; }
.card .big { font-size: 1.35rem; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
table.wide { width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 0.3rem 0.45rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg-alt); position: sticky; top: 0; vertical-align: bottom; font-weight: 600; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: "\\00a0\\2195"; color: var(--muted); font-size: 0.8em; }
th[aria-sort="ascending"]::after { content: "\\00a0\\2191"; }
th[aria-sort="descending"]::after { content: "\\00a0\\2193"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num .v, td.num .x { white-space: nowrap; }
td.name { overflow-wrap: anywhere; min-width: 13rem; }
#leaderboard td.name { min-width: min(18rem, 24vw); }
td .sub { display: block; color: var(--muted); font-size: 0.85em; }
.phone-only { display: none; }
tr.hidden { display: none; }
input.filter { font: inherit; padding: 0.3rem 0.5rem; width: min(24rem, 100%); margin: 0.3rem 0; }
figure { margin: 1rem 0; }
figure img { width: 100%; max-width: 1100px; height: auto; border: 1px solid var(--line); }
main img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.85rem; }
footer { color: var(--muted); font-size: 0.8rem; border-top: 1px solid var(--line); margin-top: 3rem;
  padding-top: 0.8rem; padding-bottom: 2rem; }
.reasons > li { margin-bottom: 1rem; overflow-wrap: anywhere; }
.reasons pre .label { white-space: nowrap; }
.reasons > li > p { margin: 0 0 0.3rem; }
.reasons details ul { margin: 0.3rem 0; font-size: 0.88rem; }
@media (max-width: 700px) {
  .opt { display: none; }
  .phone-only { display: block; margin-top: 0.15rem; }
  h1 { font-size: 1.25rem; }
  table { font-size: 0.8rem; }
  th, td { padding: 0.25rem 0.3rem; }
  td.name, #leaderboard td.name { min-width: 6rem; }
  td.num .pm, td.num .x { display: block; font-size: 0.9em; color: var(--muted); }
  header nav a { display: inline-block; margin-bottom: 0.3rem; }
  .reasons { padding-left: 1.2rem; }
  pre { font-size: 0.74rem; padding: 0.4rem 0.5rem; }
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
      var full = th.getAttribute("title");
      th.setAttribute("title", (full ? full + " (" : "") + "click to sort" + (full ? ")" : ""));
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
