"""``python -m leaderboard render [--board DIR] [--check]``: write the board's ``README.md`` (a
Markdown table per task) and ``site/index.html`` (one self-contained page: sortable tables, an
inline SVG chart per task, the seeds' reported numbers as marked reference rows).

One table per task and data variant. Rows: entries ranked by :func:`leaderboard.board.rank_key`
(the primary metric's mean, ties by the time submit accepted them, then the content hash:
nothing the submitter chooses), each with its wall time and hardware, a link to its entry
JSON, the command that reproduces it and its reproduction mark (date and hardware) when it
has one; plus reference rows from ``benchmarks/reference/<task>_reported.json``
(``{"rows": {model: {metric: value}}}``), marked "reported", annotated with how their
protocol differs, and never ranked. The page loads nothing from outside: its script and style
are inline and pinned by a Content-Security-Policy. Output is deterministic (no timestamps),
so ``--check`` can tell whether it is up to date.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import benchmarks
from benchmarks.task import Task
from benchmarks.tasks import all_tasks

from .board import Board, mark_path, rank_key
from .errors import Rejected
from .validate import read_entry

REFERENCE_DIR = Path(benchmarks.__file__).resolve().parent / "reference"


@dataclass(frozen=True)
class Row:
    """One table row: an entry (rank >= 1) or a reported reference number (rank None)."""

    rank: int | None
    model: str
    mean: float
    std: float | None
    seeds: int | None
    params: int | None
    hardware: str
    date: str
    code_url: str | None
    entry_id: str
    entry_file: str = ""             # path relative to the board root: entries/<task>/<stem>.json
    wall_time_s: float | None = None
    reproduced: str | None = None    # "YYYY-MM-DD on <hardware>" of a valid reproduction mark

    @property
    def reproduce_command(self) -> str:
        return f"python -m leaderboard reproduce leaderboard/{self.entry_file}" if self.entry_file else ""

    @property
    def reported(self) -> bool:
        return self.rank is None


def _hardware(hw: dict) -> str:
    if hw.get("gpu"):
        text = str(hw["gpu"])
    else:
        text = str(hw.get("cpu") or hw.get("machine") or "unknown")
        if hw.get("cpus"):
            text += f" ({hw['cpus']} CPUs)"
    return text[:60]


def reference_rows(task: Task) -> tuple[list[Row], str | None]:
    """The seeds' reported numbers of the task's primary metric, and their source note."""
    path = REFERENCE_DIR / f"{task.name.replace('-', '_')}_reported.json"
    if not path.is_file():
        return [], None
    ref = json.loads(path.read_text())
    rows = []
    for model, values in sorted(ref.get("rows", {}).items()):
        v = values.get(task.primary_metric) if isinstance(values, dict) else None
        if isinstance(v, (int, float)) and math.isfinite(v):
            rows.append(Row(None, model, float(v), None, None, None, "", "", None, ""))
    note = ref.get("source")
    if note and ref.get("protocol_differences"):
        note = f"{note} {ref['protocol_differences']}"
    return rows, note


def _entry_row(rank: int, task: Task, e: dict) -> Row:
    r = e["results"]
    agg = r["metrics"]["aggregate"][task.primary_metric]
    mark = e.get("_mark")
    return Row(rank, r["model"]["name"], float(agg["mean"]), float(agg["std"]), len(r["metrics"]["per_seed"]),
               int(r["model"]["parameters"]), _hardware(r["environment"]["hardware"]),
               str(e.get("accepted") or r["created"])[:10], e["code_url"], f"{e['task']}/{e['content_sha256'][:12]}",
               e.get("_file", ""), float(r["wall_time_s"]),
               f"{mark['date']} on {_hardware(mark['hardware'])}" if mark else None)


def task_rows(task: Task, entries: list[dict]) -> list[Row]:
    """Ranked entry rows then reference rows, merged in metric order (best first)."""
    sign = 1.0 if task.lower_is_better else -1.0
    ranked = sorted(entries, key=lambda e: rank_key(e, task))
    rows = [_entry_row(i + 1, task, e) for i, e in enumerate(ranked)]
    refs, _ = reference_rows(task)
    return sorted(rows + refs, key=lambda row: (sign * row.mean, row.reported, row.rank or 0, row.model))


def sections() -> list[tuple[str, Task, str | None]]:
    """(section id, task, variant) of every table of the board: one per task, or one per data
    variant for tasks that have several (variants are ranked separately)."""
    out = []
    for name, task in all_tasks().items():
        for variant in task.variants or (None,):
            out.append((name if variant is None else f"{name}/{variant}", task, variant))
    return out


def section_title(task: Task, variant: str | None) -> str:
    return task.name if variant is None else f"{task.name}, variant {variant}"


def load_entries(board: Board) -> dict[str, list[dict]]:
    """section id -> integrity-checked entries (content hash, schema); raises Rejected on a bad one."""
    out: dict[str, list[dict]] = {sid: [] for sid, _, _ in sections()}
    for path in board.entry_files():
        entry = dict(read_entry(path))
        entry["_file"] = path.relative_to(board.root).as_posix()
        entry["_mark"] = _mark(path, entry)
        variant = entry["results"]["task"].get("variant")
        sid = entry["task"] if variant is None else f"{entry['task']}/{variant}"
        if sid in out:
            out[sid].append(entry)
    return out


def _mark(path: Path, entry: dict) -> dict | None:
    """The entry's reproduction mark, if it has a valid one (render shows it; validate checks it)."""
    from .reproduce import read_mark

    where = mark_path(path)
    if not where.is_file():
        return None
    try:
        return read_mark(where, entry)
    except Rejected:
        return None


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.5g}"


def _metric_note(task: Task) -> str:
    m = task.metrics().get(task.primary_metric)
    return f"{m.definition} ({m.unit})" if m else task.primary_metric


def _metric_header(task: Task) -> str:
    m = task.metrics().get(task.primary_metric)
    return f"{task.primary_metric} [{m.unit}]" if m else task.primary_metric


# ---------------------------------------------------------------- Markdown

def _md(text: str) -> str:
    out = html.escape(text, quote=False)
    for ch in "\\`*_[]|#!":
        out = out.replace(ch, "\\" + ch)
    return out


def summary(board_entries: dict[str, list[dict]]) -> list[tuple[str, str, Task, Row | None, int]]:
    """(section id, title, task, best entry row or None, number of entries) per table: what a
    reader sees first."""
    out = []
    for sid, task, variant in sections():
        entries = board_entries.get(sid, [])
        best = next((r for r in task_rows(task, entries) if not r.reported), None)
        out.append((sid, section_title(task, variant), task, best, len(entries)))
    return out


def render_markdown(board_entries: dict[str, list[dict]]) -> str:
    """The README: a table per task (rank, model, metric mean ± std, seeds, params, hardware,
    date, code link), reported rows marked."""
    lines = ["# densegen leaderboard", "",
             "Generated by `python -m leaderboard render` from `entries/`: do not edit by hand. "
             "Every entry was accepted by `python -m leaderboard submit`, which recomputed its metrics from the "
             "submitted predictions; see [SUBMITTING.md](SUBMITTING.md). The web page is `site/index.html`.", "",
             "| table | primary metric | best entry | entries |", "|---|---|---|---:|"]
    for sid, title, task, best, n in summary(board_entries):
        unit = task.metrics()[task.primary_metric].unit if task.primary_metric in task.metrics() else ""
        lead = f"{_md(best.model)}: {_num(best.mean)} {_md(unit)}" if best else "—"
        lines.append(f"| {_md(title)} | `{task.primary_metric}` | {lead} | {n} |")
    lines.append("")
    for sid, task, variant in sections():
        rows = task_rows(task, board_entries.get(sid, []))
        better = "lower is better" if task.lower_is_better else "higher is better"
        lines += [f"## {section_title(task, variant)} (task version {task.version})", "",
                  f"Primary metric: `{task.primary_metric}` ({better}); {_md(_metric_note(task))}. "
                  f"Entries need at least {task.min_seeds_leaderboard} seed(s).", "",
                  f"| rank | model | {_md(_metric_header(task))} (mean ± std) | seeds | params | hardware | "
                  "wall | accepted | reproduced | entry | code |",
                  "|---:|---|---:|---:|---:|---|---:|---|---|---|---|"]
        if not board_entries.get(sid):
            lines.append("| — | *no entries yet* | | | | | | | | | |")
        for r in rows:
            if r.reported:
                lines.append(f"| *reported* | {_md(r.model)} *(reported)* | {_num(r.mean)} | — | — | — | — | — | — "
                             "| — | — |")
            else:
                code = f"[code]({r.code_url})" if r.code_url else "—"
                lines.append(f"| {r.rank} | {_md(r.model)} | {_num(r.mean)} ± {_num(r.std)} | {r.seeds} | "
                             f"{r.params:,} | {_md(r.hardware)} | {_wall(r.wall_time_s)} | {r.date} | "
                             f"{_md(r.reproduced) if r.reproduced else 'no'} | [json]({r.entry_file}) | {code} |")
        if board_entries.get(sid):
            lines += ["", "Re-run any entry and compare its predictions: `python -m leaderboard reproduce "
                          "leaderboard/entries/<task>/<entry>.json` (add `--write-mark` to record a reproduction)."]
        _, source = reference_rows(task)
        if source:
            lines += ["", f"Rows marked *reported* are numbers as printed in the papers, not produced or verified "
                          f"here (other splits and protocols): {_md(source)}"]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1b1f24}
h1{margin-bottom:.2rem}section{margin:2.5rem 0}h2 small{color:#57606a;font-weight:normal;font-size:.7em}
p.note{color:#57606a;font-size:.9em}table{border-collapse:collapse;width:100%;font-size:.92em;margin-top:.8rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .6rem;text-align:left}td.num,th.num{text-align:right}
th[data-sort]{cursor:pointer;user-select:none;background:#f6f8fa}th[data-sort]:hover{background:#eaeef2}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.reported td{color:#57606a;font-style:italic;background:#fbfbfb}
code.cmd{font-size:.78em;color:#57606a;word-break:break-all;display:block;max-width:22em}details summary{cursor:pointer;color:#57606a;font-size:.85em}span.badge.ok{border-color:#1a7f37;color:#1a7f37}
nav ul{columns:2;font-size:.92em}span.badge{font-style:normal;font-size:.75em;border:1px solid #8c959f;border-radius:.6em;padding:0 .4em;color:#57606a}
svg.chart{display:block;max-width:100%;height:auto;margin-top:.6rem}svg.chart text{font-size:12px;fill:#1b1f24}
""".strip()

SCRIPT = """
(function () {
  function key(cell, type) {
    var v = cell ? cell.getAttribute("data-value") : null;
    if (v === null || v === "") return null;
    return type === "num" ? parseFloat(v) : v.toLowerCase();
  }
  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var col = headers.indexOf(th), type = th.getAttribute("data-sort");
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains("empty"); });
    rows.sort(function (a, b) {
      var x = key(a.cells[col], type), y = key(b.cells[col], type);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   /* missing values last in both directions */
      if (y === null) return -1;
      if (type === "num") return dir * (x - y);
      return dir * x.localeCompare(y);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") sortTable(table, th); });
    });
  });
})();
""".strip()


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def render_chart(task: Task, rows: list[Row]) -> str:
    """An inline SVG bar chart of the primary metric (mean, ± std whiskers), best first;
    reported rows in grey with a dashed outline."""
    label_w, bar_w, value_w, row_h, top = 230, 560, 110, 22, 26
    width = label_w + bar_w + value_w
    height = top + row_h * max(len(rows), 1) + 10
    vmax = max([abs(r.mean) + (r.std or 0.0) for r in rows] + [0.0]) or 1.0
    parts = [f'<svg class="chart" role="img" aria-label="{_e(task.primary_metric)} per model" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{label_w}" y="16">{_e(task.primary_metric)} (mean ± std; '
             f'{"lower" if task.lower_is_better else "higher"} is better)</text>',
             f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{height - 6}" stroke="#8c959f"/>']
    if not rows:
        parts.append(f'<text x="{label_w + 8}" y="{top + 15}">no entries yet</text>')
    for i, r in enumerate(rows):
        y = top + i * row_h
        w = bar_w * abs(r.mean) / vmax
        name = r.model if len(r.model) <= 30 else r.model[:29] + "…"
        label = f"{name} (reported)" if r.reported else f"{r.rank}. {name}"
        style = 'fill="#d0d7de" stroke="#6e7781" stroke-dasharray="3 2"' if r.reported else 'fill="#3b82c4"'
        cls = "bar reported" if r.reported else "bar entry"
        parts.append(f'<g class="{cls}"><title>{_e(r.model)}: {_e(_num(r.mean))}'
                     f'{"" if r.std is None else " ± " + _e(_num(r.std))}</title>'
                     f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{w:.2f}" height="{row_h - 8}" {style}/>')
        if r.std:
            lo, hi = bar_w * max(abs(r.mean) - r.std, 0) / vmax, bar_w * (abs(r.mean) + r.std) / vmax
            parts.append(f'<line x1="{label_w + lo:.2f}" x2="{label_w + hi:.2f}" y1="{y + row_h / 2}" '
                         f'y2="{y + row_h / 2}" stroke="#1b1f24"/>')
        parts.append(f'<text x="{label_w + w + 6:.2f}" y="{y + 15}">{_e(_num(r.mean))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _cell(text, value, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-value="{_e(value)}">{text}</td>'


def render_table(task: Task, rows: list[Row], n_entries: int, section: str = "") -> str:
    """A sortable HTML table: every header but 'code' sorts on click (numbers by value)."""
    head = [("rank", "num", "num"), ("model", "text", ""), (f"{_metric_header(task)} (mean ± std)", "num", "num"),
            ("seeds", "num", "num"), ("params", "num", "num"), ("hardware", "text", ""), ("wall", "num", "num"),
            ("accepted", "text", ""), ("reproduced", "text", "")]
    ths = "".join(f'<th data-sort="{t}"{" class=num" if c else ""} scope="col">{_e(h)}</th>' for h, t, c in head)
    out = [f'<table class="sortable" data-task="{_e(task.name)}" data-section="{_e(section)}"><thead><tr>{ths}'
           '<th scope="col">entry</th><th scope="col">code</th></tr></thead><tbody>']
    if not n_entries:
        out.append(f'<tr class="empty"><td colspan="{len(head) + 2}">no entries yet: see SUBMITTING.md</td></tr>')
    for r in rows:
        if r.reported:
            out.append('<tr class="reported">' + _cell('<span class="badge">reported</span>', "")
                       + _cell(_e(r.model), r.model) + _cell(_e(_num(r.mean)), repr(r.mean), "num")
                       + _cell("—", "", "num") * 2 + _cell("—", "") + _cell("—", "", "num") + _cell("—", "")
                       + _cell("—", "") + "<td>—</td><td>—</td></tr>")
        else:
            code = (f'<a href="{_e(r.code_url)}" rel="nofollow noopener noreferrer">code</a>' if r.code_url else "—")
            repro = (f'<span class="badge ok">reproduced</span> {_e(r.reproduced)}' if r.reproduced else "no")
            link = (f'<a href="../{_e(r.entry_file)}">json</a><details><summary>re-run</summary>'
                    f'<code class="cmd">{_e(r.reproduce_command)}</code></details>' if r.entry_file else "—")
            out.append(f'<tr class="entry" data-entry="{_e(r.entry_id)}">' + _cell(str(r.rank), r.rank, "num")
                       + _cell(_e(r.model), r.model)
                       + _cell(f"{_e(_num(r.mean))} ± {_e(_num(r.std))}", repr(r.mean), "num")
                       + _cell(str(r.seeds), r.seeds, "num") + _cell(f"{r.params:,}", r.params, "num")
                       + _cell(_e(r.hardware), r.hardware) + _cell(_e(_wall(r.wall_time_s)), r.wall_time_s, "num")
                       + _cell(_e(r.date), r.date) + _cell(repro, r.reproduced or "")
                       + f"<td>{link}</td><td>{code}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(board_entries: dict[str, list[dict]]) -> str:
    """The self-contained page (no external resources; CSP pins the inline script and style)."""
    csp = (f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src {_csp_hash(STYLE)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    items = []
    for sid, title, task, best, n in summary(board_entries):
        unit = task.metrics()[task.primary_metric].unit if task.primary_metric in task.metrics() else ""
        lead = (f"best <b>{_e(best.model)}</b> {_e(_num(best.mean))} {_e(unit)}" if best else "no entries yet")
        items.append(f'<li><a href="#task-{_e(sid.replace("/", "-"))}">{_e(title)}</a> '
                     f'(<code>{_e(task.primary_metric)}</code>): {lead}; {n} entr{"y" if n == 1 else "ies"}</li>')
    body = [f'<nav aria-label="tables"><ul>{"".join(items)}</ul></nav>']
    for sid, task, variant in sections():
        entries = board_entries.get(sid, [])
        rows = task_rows(task, entries)
        _, source = reference_rows(task)
        better = "lower is better" if task.lower_is_better else "higher is better"
        body.append(f'<section id="task-{_e(sid.replace("/", "-"))}"><h2>{_e(section_title(task, variant))} '
                    f'<small>task version {_e(task.version)}</small></h2>'
                    f'<p>Primary metric <code>{_e(task.primary_metric)}</code> ({better}): {_e(_metric_note(task))}. '
                    f'{len(entries)} entr{"y" if len(entries) == 1 else "ies"}; at least '
                    f'{task.min_seeds_leaderboard} seed(s) each. Click a column header to sort.</p>'
                    + render_chart(task, rows) + render_table(task, rows, len(entries), sid))
        if source:
            body.append(f'<p class="note">Rows marked <span class="badge">reported</span> are numbers as printed '
                        f'in the papers, not produced or verified here (other splits and protocols): {_e(source)}</p>')
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>densegen leaderboard</title><style>{STYLE}</style></head><body>"
            "<h1>densegen leaderboard</h1><p>Every entry was accepted by <code>python -m leaderboard submit</code>, "
            "which recomputed its metrics from the submitted predictions against the benchmark's own labels. "
            "Generated by <code>python -m leaderboard render</code>.</p>"
            + "\n".join(body) + f"<script>{SCRIPT}</script></body></html>\n")


def render(board: Board = Board(), check: bool = False) -> list[Path]:
    """Write (or with ``check``, compare) ``README.md`` and ``site/index.html`` of the board.

    Returns:
        The paths written, or with ``check`` the paths that are out of date (empty = up to date).

    Raises:
        Rejected: if a stored entry fails its integrity checks (content hash, schema).
    """
    entries = load_entries(board)
    outputs = {board.readme: render_markdown(entries), board.page: render_html(entries)}
    changed = []
    for path, text in outputs.items():
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                changed.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed
