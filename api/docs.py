"""The /docs page: the OpenAPI document as plain HTML, rendered on the server.

No scripts and no assets from elsewhere (the machine may have no internet): one page
with a section per operation and a table per schema. Every text is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{font-family:ui-monospace,monospace;background:#f4f4f4;padding:0 .2em}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;
text-align:left;vertical-align:top}h2{border-top:1px solid #ccc;padding-top:1rem}
.method{font-weight:bold;color:#075}"""


def render(document: dict[str, Any]) -> str:
    info = document["info"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info['title'])}"
             f" API</title><style>{STYLE}</style></head><body>",
             f"<h1>{escape(info['title'])} API {escape(info['version'])}</h1>",
             f"<p>{_text(info['description'])}</p>",
             "<p>The machine-readable document: <a href='/openapi.json'>/openapi.json</a>.</p>"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parts.append(_operation(method, path, operation))
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(f"<h3 id='{escape(name)}'>{escape(name)}</h3>{_schema_table(schema)}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    security = operation.get("security", [])
    auth = "needs the bearer token" if security else "needs no token"
    html = [f"<h2><span class='method'>{method.upper()}</span> <code>{escape(path)}</code>"
            f" &mdash; {escape(operation['summary'])}</h2>",
            f"<p>{_text(operation['description'])}</p><p><em>{auth}</em></p>"]
    if operation["parameters"]:
        html.append("<table><tr><th>parameter</th><th>in</th><th>schema</th>"
                    "<th>meaning</th></tr>")
        for p in operation["parameters"]:
            html.append(f"<tr><td><code>{escape(p['name'])}</code></td><td>{p['in']}</td>"
                        f"<td><code>{escape(_compact(p['schema']))}</code></td>"
                        f"<td>{_text(p['description'])}</td></tr>")
        html.append("</table>")
    html.append("<table><tr><th>status</th><th>answer</th></tr>")
    for status, response in operation["responses"].items():
        media = ", ".join(f"{escape(m)} {_schema_link(c['schema'])}"
                          for m, c in response["content"].items())
        html.append(f"<tr><td>{status}</td><td>{_text(response['description'])}"
                    f"<br><small>{media}</small></td></tr>")
    html.append("</table>")
    return "\n".join(html)


def _schema_table(schema: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><code>{escape(name)}</code></td><td>{_schema_link(prop)}</td></tr>"
                   for name, prop in schema.get("properties", {}).items())
    return f"<table><tr><th>field</th><th>schema</th></tr>{rows}</table>"


def _schema_link(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#{escape(name)}'>{escape(name)}</a>"
    if schema.get("type") == "array":
        return f"array of {_schema_link(schema['items'])}"
    return f"<code>{escape(_compact(schema))}</code>"


def _compact(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(", ", ": "), ensure_ascii=False)


def _text(text: str) -> str:
    """Escape, then show `code` spans as code: the descriptions use that much markdown."""
    pieces = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
