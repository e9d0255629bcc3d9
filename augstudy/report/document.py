"""A tiny document model rendered to both Markdown and HTML.

The study report exists in two formats; building it once as blocks and rendering twice keeps
them from drifting apart, without pulling in a Markdown library.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report
    caption: str
    source: str = ""  # the command or options file that made it


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Figure | Table | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def to_markdown(self) -> str:
        parts = [f"# {self.title}"]
        for block in self.blocks:
            if isinstance(block, Heading):
                parts.append(f"{'#' * block.level} {block.text}")
            elif isinstance(block, Paragraph):
                parts.append(block.text)
            elif isinstance(block, Figure):
                made_by = f"\n*Made by:* `{block.source}`" if block.source else ""
                parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*{made_by}")
            elif isinstance(block, Table):
                lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
                lines += ["| " + " | ".join(row) + " |" for row in block.rows]
                parts.append("\n".join(lines))
            elif isinstance(block, Code):
                parts.append(f"```\n{block.text}\n```")
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        esc = html.escape
        body = [f"<h1>{esc(self.title)}</h1>"]
        for block in self.blocks:
            if isinstance(block, Heading):
                body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
            elif isinstance(block, Paragraph):
                body.append(f"<p>{esc(block.text)}</p>")
            elif isinstance(block, Figure):
                made_by = f"<br><small>Made by: <code>{esc(block.source)}</code></small>" if block.source else ""
                body.append(
                    f'<figure><img src="{esc(block.path)}" alt="{esc(block.caption)}">'
                    f"<figcaption>{esc(block.caption)}{made_by}</figcaption></figure>"
                )
            elif isinstance(block, Table):
                head = "".join(f"<th>{esc(cell)}</th>" for cell in block.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Code):
                body.append(f"<pre><code>{esc(block.text)}</code></pre>")
        style = (
            "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
            "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
        )
        return (
            f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )
