"""The one HTML page of the report, the comparison and the dashboard: a shell that renders the views JSON
with plotly.js, one div per figure of the views, in their order."""

from __future__ import annotations

import html
from string import Template

#: Seconds between refreshes of the live page.
REFRESH_SECONDS = 3

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
#summary { color: #555; margin-bottom: 1em; }
#status { color: #999; font-size: 0.85em; }
.figure { min-height: 420px; margin-bottom: 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: right; }
.pareto-table td:nth-child(2), .pareto-table th:nth-child(2), .runs-table :first-child { text-align: left; }
</style>
$plotly
</head>
<body>
<h1 id="title">$title</h1>
<div id="summary"></div>
<div id="status"></div>
<div id="figures"></div>
<h2 id="table-title"></h2>
<div id="table"></div>
$data
<script>
"use strict";
function render(views) {
  document.title = views.title;
  document.getElementById("title").textContent = views.title;
  document.getElementById("summary").textContent = views.summary;
  document.getElementById("status").textContent = "updated " + views.updated;
  for (const [id, figure] of Object.entries(views.figures)) {
    let div = document.getElementById(id);
    if (div === null) {
      div = document.createElement("div");
      div.id = id;
      div.className = "figure";
      document.getElementById("figures").appendChild(div);
    }
    Plotly.react(div, figure.data, figure.layout, {displaylogo: false, responsive: true});
  }
  document.getElementById("table-title").textContent = views.table_title;
  document.getElementById("table").innerHTML = views.table;
}
$loader
</script>
</body>
</html>
""")

_EMBEDDED = 'render(JSON.parse(document.getElementById("views").textContent));'
_POLLING = Template("""async function refresh() {
  try {
    const response = await fetch("api/views.json", {cache: "no-store"});
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    render(await response.json());
  } catch (error) {
    document.getElementById("status").textContent = "refresh failed: " + error.message;
  }
}
refresh();
setInterval(refresh, $ms);""")


def page_html(title: str, plotly_js: str | None = None, views_json: str | None = None) -> str:
    """The page; ``plotly_js`` inlined (else loaded from ``plotly.min.js`` beside the page) and
    ``views_json`` embedded (else fetched from ``api/views.json`` every :data:`REFRESH_SECONDS`)."""
    plotly = (f"<script>{plotly_js}</script>" if plotly_js is not None
              else '<script src="plotly.min.js"></script>')
    # "</" inside a script element would end it early; "<\/" is the same JSON string.
    data = "" if views_json is None else (
        '<script type="application/json" id="views">' + views_json.replace("</", "<\\/") + "</script>")
    loader = _POLLING.substitute(ms=REFRESH_SECONDS * 1000) if views_json is None else _EMBEDDED
    return _PAGE.substitute(title=html.escape(title), plotly=plotly, data=data, loader=loader)
