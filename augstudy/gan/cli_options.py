"""Click option helpers shared by `train-gan` and `generate`."""

from __future__ import annotations

import click


def comma_list(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated options and comma-separated lists alike: `--class a,b` == `--class a --class b`."""
    return tuple(item.strip() for chunk in value for item in chunk.split(",") if item.strip())
