"""A tiny document model rendered to both Markdown and HTML.

The study report exists in two formats; building it once as blocks and rendering twice keeps
them from drifting apart, without pulling in a Markdown library. Text may use the two inline
Markdown marks the report needs, `code` and **bold**; the HTML renders them as tags, so no
literal backtick or asterisk reaches a browser.
"""

from __future__ import annotations

import html
import re
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


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Banner:
    """A warning no reader can miss: a boxed block in HTML, a quoted bold line in Markdown."""

    text: str


Block = Heading | Paragraph | Figure | Table | Code | Bullets | Banner

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def inline_html(text: str) -> str:
    """Escape `text` for HTML and render its inline `code` and **bold** marks as tags."""
    parts, last = [], 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[last:match.start()]))
        if match.group(1) is not None:
            parts.append(f"<code>{html.escape(match.group(1))}</code>")
        else:
            parts.append(f"<strong>{html.escape(match.group(2))}</strong>")
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


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
            elif isinstance(block, Bullets):
                parts.append("\n".join(f"- {item}" for item in block.items))
            elif isinstance(block, Banner):
                parts.append(f"> **{block.text}**")
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        esc = html.escape
        body = [f"<h1>{esc(self.title)}</h1>"]
        for block in self.blocks:
            if isinstance(block, Heading):
                body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
            elif isinstance(block, Paragraph):
                body.append(f"<p>{inline_html(block.text)}</p>")
            elif isinstance(block, Figure):
                made_by = f"<br><small>Made by: <code>{esc(block.source)}</code></small>" if block.source else ""
                body.append(
                    f'<figure><img src="{esc(block.path)}" alt="{esc(block.caption)}">'
                    f"<figcaption>{inline_html(block.caption)}{made_by}</figcaption></figure>"
                )
            elif isinstance(block, Table):
                head = "".join(f"<th>{esc(cell)}</th>" for cell in block.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{inline_html(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Code):
                body.append(f"<pre><code>{esc(block.text)}</code></pre>")
            elif isinstance(block, Bullets):
                body.append("<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in block.items) + "</ul>")
            elif isinstance(block, Banner):
                body.append(f'<div class="banner">{inline_html(block.text)}</div>')
        style = (
            "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
            "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
            "code{background:#f0f0f0;padding:0 .2em}"
            ".banner{background:#fff3cd;border:3px solid #c0392b;color:#7b1d12;font-weight:bold;"
            "padding:.8em 1em;margin:1em 0;font-size:1.1em}"
        )
        return (
            f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )
