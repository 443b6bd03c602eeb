"""A report as a list of blocks, rendered to Markdown here and to HTML by `report.html`.

Blocks: Heading, Text (Markdown inline: **bold**, *italic*, `code`; lines starting
"- " are a list), Table (cells already formatted; bold cells marked) and Figures
(image paths relative to the report's folder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from exfiqa_jax.report.tables import cell


@dataclasses.dataclass
class Heading:
  text: str
  level: int = 2


@dataclasses.dataclass
class Text:
  text: str


@dataclasses.dataclass
class Table:
  header: list[str]
  cells: list[list[str]]
  bold: list[list[bool]] | None = None  # [rows][columns]

  def is_bold(self, i: int, j: int) -> bool:
    return bool(self.bold and self.bold[i][j])


@dataclasses.dataclass
class Figures:
  paths: list[str]  # PNGs relative to the report's folder (an SVG beside each)


Block = Heading | Text | Table | Figures


def table(
  rows: Sequence[dict[str, Any]],
  columns: Sequence[str],
  header: Sequence[str] | None = None,
  digits: int = 4,
) -> Table:
  """A Table of row dicts, the given columns (headers default to the column keys)."""
  return Table(
    list(header or columns), [[cell(r.get(c, ""), digits) for c in columns] for r in rows]
  )


def markdown_table(t: Table) -> str:
  def md(i, j, v):
    return f"**{v}**" if t.is_bold(i, j) else v

  lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
  lines += [
    "| " + " | ".join(md(i, j, v) for j, v in enumerate(r)) + " |" for i, r in enumerate(t.cells)
  ]
  return "\n".join(lines) + "\n"


def to_markdown(blocks: Sequence[Block]) -> str:
  out = []
  for b in blocks:
    if isinstance(b, Heading):
      out.append(f"{'#' * b.level} {b.text}\n")
    elif isinstance(b, Text):
      out.append(b.text.rstrip() + "\n")
    elif isinstance(b, Table):
      out.append(markdown_table(b))
    else:
      out.append(" ".join(f"![{p.rsplit('/', 1)[-1]}]({p})" for p in b.paths) + "\n")
  return "\n".join(out)


def from_markdown(text: str) -> list[Block]:
  """Headings and paragraphs of a Markdown header (as `exfiqa demo` writes it)."""
  blocks: list[Block] = []
  para: list[str] = []

  def flush():
    if para:
      blocks.append(Text("\n".join(para)))
      para.clear()

  for line in text.splitlines():
    if line.startswith("#"):
      flush()
      hashes = len(line) - len(line.lstrip("#"))
      blocks.append(Heading(line[hashes:].strip(), hashes))
    elif not line.strip():
      flush()
    else:
      para.append(line)
  flush()
  return blocks
