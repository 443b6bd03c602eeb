"""A self-contained HTML page of report blocks: opens from disk, no server, no network.

Figures are embedded as base64 PNG data URIs (each links to its SVG beside it, by a
`./`-prefixed, URL-quoted relative path that cannot carry a URL scheme);
the style sheet is inline; there is no script. A missing figure file is an error
naming it, so a page never shows a broken image.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence

from exfiqa_jax.fileio import write_text
from exfiqa_jax.report.document import Block, Figures, Heading, Table, Text, relative_link

STYLE = """
body { font-family: sans-serif; max-width: 1400px; margin: 1em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; }
code { background: #f3f3f3; padding: 0 2px; }
"""


def inline(text: str) -> str:
  """Markdown inline marks (**bold**, *italic*, `code`) of escaped text -> HTML."""
  s = html.escape(text, quote=False)
  s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
  # [text](relative/path.html): a link to a file beside the report
  s = re.sub(r"\[([^\]]+)\]\(([^)\s\"'<>:]+)\)", r'<a href="\2">\1</a>', s)
  s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
  return re.sub(r"\*([^*]+)\*", r"<i>\1</i>", s)


def _text(b: Text) -> str:
  lines = b.text.splitlines()
  if lines and all(x.startswith("- ") for x in lines):
    return "<ul>" + "".join(f"<li>{inline(x[2:])}</li>" for x in lines) + "</ul>"
  return f"<p>{inline(' '.join(lines))}</p>"


def _table(t: Table) -> str:
  head = "".join(f"<th>{inline(h)}</th>" for h in t.header)
  body = "".join(
    "<tr>"
    + "".join(
      f"<td><b>{html.escape(v)}</b></td>" if t.is_bold(i, j) else f"<td>{html.escape(v)}</td>"
      for j, v in enumerate(r)
    )
    + "</tr>"
    for i, r in enumerate(t.cells)
  )
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(b: Figures, base: str) -> str:
  out = []
  for rel in b.paths:
    path = os.path.join(base, rel)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: a figure of the report is missing")
    with open(path, "rb") as f:
      data = base64.b64encode(f.read()).decode("ascii")
    name = html.escape(os.path.basename(rel))
    svg = html.escape(relative_link(os.path.splitext(rel)[0] + ".svg"))
    out.append(
      f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
      f'<figcaption>{name} (<a href="{svg}">SVG</a>)</figcaption></figure>'
    )
  return "<div>" + "".join(out) + "</div>"


def to_html(blocks: Sequence[Block], base: str, title: str) -> str:
  """The page of `blocks`; figure paths are relative to `base`."""
  parts = []
  for b in blocks:
    if isinstance(b, Heading):
      level = min(max(b.level, 1), 6)
      parts.append(f"<h{level}>{inline(b.text)}</h{level}>")
    elif isinstance(b, Text):
      parts.append(_text(b))
    elif isinstance(b, Table):
      parts.append(_table(b))
    else:
      parts.append(_figures(b, base))
  return (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
    f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
    + "\n".join(parts)
    + "\n</body></html>\n"
  )


def write_html(path: str, blocks: Sequence[Block], title: str) -> str:
  """Writes the page of `blocks` to `path` (figures relative to its folder); returns path."""
  write_text(path, to_html(blocks, os.path.dirname(os.path.abspath(path)), title))
  return path
