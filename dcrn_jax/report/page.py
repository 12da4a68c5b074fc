"""The report's HTML: one self-contained page (inline CSS, no script, no network); pictures are
files next to it, linked by relative paths, so the folder opens from the file system."""

import html
import json

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .9em; }
td, th { padding: .2em .6em; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
table.summary td:first-child { color: #666; }
table.cm td { border: 1px solid #fff; min-width: 2.2em; text-align: center; font-size: .8em; }
table.cm th.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left;
                  font-weight: normal; }
.note { color: #666; font-size: .9em; }
.cards { display: flex; flex-direction: column; gap: 1em; }
.card { display: flex; gap: 1em; align-items: flex-start; border: 1px solid #ddd;
        border-radius: 6px; padding: .6em; }
.card .meta { min-width: 12em; font-size: .9em; }
.wrong { color: #b00020; font-weight: bold; } .right { color: #1b7a1b; font-weight: bold; }
img { max-width: 100%; }
"""


def _e(x) -> str:
  return html.escape(str(x))


def _num(x, digits: int = 3) -> str:
  return "-" if x is None else f"{x:.{digits}f}"


def _pct(x) -> str:
  return "-" if x is None else f"{100 * x:.1f} %"


def summary(rows: list[tuple[str, str]], config: dict) -> str:
  body = "".join(f"<tr><td>{_e(k)}</td><td style='text-align:left'>{_e(v)}</td></tr>"
                 for k, v in rows)
  return (f"<table class='summary'>{body}</table><details><summary>full config</summary>"
          f"<pre>{_e(json.dumps(config, indent=2, sort_keys=True))}</pre></details>")


def per_class_table(per_class: dict) -> str:
  """Classes sorted by F1, worst first (a class never scored sorts last)."""
  order = sorted(per_class.items(), key=lambda kv: (kv[1]["f1"] is None, kv[1]["f1"] or 0.0))
  rows = "".join(
      f"<tr><td>{_e(name)}</td><td>{_num(m['precision'])}</td><td>{_num(m['recall'])}</td>"
      f"<td>{_num(m['f1'])}</td><td>{m['support']}</td></tr>" for name, m in order)
  return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
          f"<th>support</th></tr>{rows}</table>")


def confusion_table(matrix: list[list[int]], names) -> str:
  """Row-normalised colours; each cell's counts on hover, and its share written in it when
  there are few classes."""
  show_text = len(names) <= 30
  head = "".join(f"<th class='col'>{_e(n)}</th>" for n in names)
  rows = []
  for i, row in enumerate(matrix):
    total = sum(row)
    cells = []
    for j, count in enumerate(row):
      share = count / total if total else 0.0
      ink = "#fff" if share > 0.55 else "#222"
      text = f"{100 * share:.0f}" if show_text and count else ""
      tip = f"true {names[i]}, predicted {names[j]}: {count} of {total} ({100 * share:.1f} %)"
      cells.append(f"<td style='background:rgba(31,119,180,{share:.3f});color:{ink}' "
                   f"title='{_e(tip)}'>{text}</td>")
    rows.append(f"<tr><th>{_e(names[i])}</th>{''.join(cells)}<td class='note'>{total}</td></tr>")
  return (f"<table class='cm'><tr><th>true \\ predicted</th>{head}<th class='col'>examples"
          f"</th></tr>{''.join(rows)}</table>")


def confused_pairs(matrix: list[list[int]], names, limit: int = 10) -> str:
  pairs = sorted(((count, i, j) for i, row in enumerate(matrix) for j, count in enumerate(row)
                  if i != j and count), reverse=True)[:limit]
  if not pairs:
    return "<p class='note'>No example was misclassified.</p>"
  rows = "".join(
      f"<tr><td>{_e(names[i])}</td><td style='text-align:left'>{_e(names[j])}</td>"
      f"<td>{count}</td><td>{_pct(count / sum(matrix[i]))}</td></tr>" for count, i, j in pairs)
  return ("<table><tr><th>true class</th><th style='text-align:left'>predicted as</th>"
          f"<th>examples</th><th>of the true class</th></tr>{rows}</table>")


def card(example, moving: str, strip: str | None, views: int) -> str:
  r = example.record
  ok = r["prediction"] == r["label"]
  probs = r["probabilities"]
  view_note = f"<br>shown: view 1 of {views}" if views > 1 else ""
  strip_img = (f"<img src='{_e(strip)}' alt='evidence for {_e(r['label_name'])}'>"
               if strip else "")
  return (
      f"<div class='card'><img src='{_e(moving)}' alt='example {_e(r['id'])}'>"
      f"<div class='meta'><span class='{'right' if ok else 'wrong'}'>"
      f"{'right' if ok else 'wrong'}</span><br>true: <b>{_e(r['label_name'])}</b> "
      f"(p = {probs[r['label']]:.3f})<br>predicted: <b>{_e(r['prediction_name'])}</b> "
      f"(p = {probs[r['prediction']]:.3f})<br><span class='note'>id: {_e(r['id'])}"
      f"{view_note}</span></div>{strip_img}</div>")


def page(title: str, sections: list[tuple[str, str]], notes: list[str]) -> str:
  body = "".join(f"<h2>{_e(head)}</h2>{content}" for head, content in sections)
  if notes:
    body += "<h2>Not shown</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
  return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}"
          f"</title><style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>")


def image(name: str, alt: str) -> str:
  return f"<img src='{_e(name)}' alt='{_e(alt)}'>"


def paragraph(text: str) -> str:
  return f"<p class='note'>{_e(text)}</p>"
