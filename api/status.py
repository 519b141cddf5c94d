"""GET /: the status page, plain server-rendered HTML that refreshes itself.

Recent files with their state and counts, a progress bar for files being loaded, and
a link to each file's rejects; above them, any worker that reports it cannot work, and
each dataset being rebuilt or waiting for `chute rebuild`. No scripts, no build step, no
assets from elsewhere.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any

from aiohttp import web

from api.routes import CONFIG, POOL, QUERIES

REFRESH_SECONDS = 2
RECENT = 50

routes = web.RouteTableDef()

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>chute: status</title>
<style>
 body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
 h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} p.sub {{ color: #666; margin: 0 0 1.2em; }}
 .totals span {{ display: inline-block; margin-right: 1.5em; }}
 table {{ border-collapse: collapse; width: 100%; margin-top: 1em; }}
 th, td {{ text-align: left; padding: .35em .6em; border-bottom: 1px solid #e4e4e4; }}
 th {{ background: #f6f6f6; font-weight: 600; }} td.n {{ text-align: right; }}
 .state {{ padding: .1em .5em; border-radius: .8em; font-size: .9em; }}
 .loaded {{ background: #dcf5dc; }} .duplicate {{ background: #dcecf5; }}
 .quarantined {{ background: #fbefc8; }} .failed {{ background: #f8d4d4; }}
 .received, .processing {{ background: #ececec; }}
 .keyed {{ color: #666; font-size: .85em; white-space: nowrap; }}
 progress {{ width: 10em; }} .error {{ color: #a33; font-size: .9em; }}
 .problem {{ background: #f8d4d4; padding: .6em 1em; border-radius: .3em; }}
 .rebuild {{ background: #e8eef8; padding: .6em 1em; border-radius: .3em; }}
</style></head>
<body>
<h1>chute</h1>
<p class="sub">Files dropped into the inbox, newest first. This page refreshes every
{refresh} s. Updated {now}.</p>
{problems}{rebuilds}<p class="totals">{totals}</p>
<table>
<thead><tr><th>File</th><th>Dataset</th><th>State</th><th>Progress</th><th>Loaded</th><th>Rejected</th>
<th>Rows</th><th>Received</th><th>Took</th><th>Rejects</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


@routes.get("/")
async def status_page(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        files = await request.app[QUERIES].files(conn, None, None, None, RECENT)
        workers = await request.app[QUERIES].worker_problems(conn)
        tables = await request.app[QUERIES].tables(conn)
    # A worker that cannot work comes first: no file moves until it is fixed.
    problems = "".join(
        f'<p class="problem"><strong>{escape(w["service"])} {escape(w["kind"])}</strong> '
        f'({escape(w["instance"])}, {_time(w["reported_at"])}): {escape(w["problem"])}</p>\n'
        for w in workers)
    counts: dict[str, int] = {}
    for f in files:
        counts[f["state"]] = counts.get(f["state"], 0) + 1
    totals = " ".join(f'<span><span class="state {s}">{s}</span> {n}</span>'
                      for s, n in sorted(counts.items())) or "No files yet: drop a CSV file " \
        "into the inbox."
    body = PAGE.format(refresh=REFRESH_SECONDS, now=_time(datetime.now().astimezone()),
                       problems=problems, rebuilds=_rebuilds(request.app[CONFIG], tables),
                       totals=totals, rows="\n".join(_row(f) for f in files))
    return web.Response(text=body, content_type="text/html")


def _rebuilds(config: Any, tables: dict[str, Any]) -> str:
    """A line per dataset whose table is being rebuilt, or holds another declaration than
    the one declared (its new files wait for the rebuild; see docs/datasets.md)."""
    lines = []
    for dataset in config.datasets:
        name, table = dataset.name, tables.get(dataset.name)
        if table is None:
            continue
        if table["rebuild_id"] is not None:
            done, total = table["files_done"], table["files_total"]
            bar = (f'<progress value="{done}" max="{total}"></progress> ' if total else "")
            lines.append(f'<p class="rebuild"><strong>{escape(name)}</strong>: rebuilding '
                         f"since {_time(table['started_at'])}, {bar}{done:,} of {total:,} "
                         "files</p>\n")
        elif table["declaration"] != dataset.declaration_hash:
            lines.append(f'<p class="rebuild"><strong>{escape(name)}</strong>: its table '
                         "holds an earlier declaration; new files wait for "
                         f"<code>chute rebuild {escape(name)}</code></p>\n")
    return "".join(lines)


def _row(f: Any) -> str:
    loaded, rejected, total = f["rows_loaded"], f["rows_rejected"], f["rows_total"]
    done = (loaded or 0) + (rejected or 0)
    if f["state"] in ("received", "processing"):
        # The total is known once the transformer has read the whole file.
        bar = (f'<progress value="{done}" max="{total}"></progress>' if total
               else f"<progress></progress> {done:,} rows so far")
    else:
        bar = ""
    took = ""
    if f["finished_at"]:
        took = f"{(f['finished_at'] - f['received_at']).total_seconds():.2f} s"
    rejects = (f'<a href="/files/{f["file_id"]}/rejects">{rejected:,} rejected</a>'
               if rejected else "")
    error = f'<div class="error">{escape(f["error"])}</div>' if f["error"] else ""
    return (
        f"<tr><td>{escape(f['name'])}{error}</td><td>{_dataset(f)}</td>"
        f'<td><span class="state {f["state"]}">{f["state"]}</span></td><td>{bar}</td>'
        f'<td class="n">{_n(loaded)}{_keyed(f)}</td><td class="n">{_n(rejected)}</td>'
        f'<td class="n">{_n(total)}</td><td>{_time(f["received_at"])}</td>'
        f"<td>{took}</td><td>{rejects}</td></tr>"
    )


def _dataset(f: Any) -> str:
    """The file's dataset; for a zip archive, what became of its entries."""
    if f["entries"] is None:
        return escape(f["dataset"] or "")
    entries = json.loads(f["entries"])
    states: dict[str, int] = {}
    for entry in entries:
        if entry["file_id"] is not None:
            states[entry["state"]] = states.get(entry["state"], 0) + 1
    members = sum(states.values())
    told = ", ".join(f"{n:,} {state}" for state, n in sorted(states.items()))
    skipped = len(entries) - members
    return (f'<span class="keyed">zip archive: {members:,} members'
            + (f" ({told})" if told else "")
            + (f", {skipped:,} skipped" if skipped else "") + "</span>")


def _keyed(f: Any) -> str:
    """Under a keyed file's loaded count, what its rows did (see docs/keys.md)."""
    if f["rows_inserted"] is None:
        return ""
    return (f'<div class="keyed">{f["rows_inserted"]:,} inserted, '
            f'{f["rows_replaced"]:,} replaced, {f["rows_ignored"]:,} ignored as older'
            + (f', {f["rows_deleted"]:,} deleted' if f["rows_deleted"] is not None else "")
            + "</div>")


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z")
