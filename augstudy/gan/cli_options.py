"""Click option helpers shared by `train-gan` and `generate`."""

from __future__ import annotations

import click


def comma_list(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated options and comma-separated lists alike: `--class a,b` == `--class a --class b`.

    Given but naming nothing (`--classes ''`) is refused rather than read as "not given"."""
    items = tuple(item.strip() for chunk in value for item in chunk.split(",") if item.strip())
    if value and not items:
        raise click.BadParameter(f"{','.join(value)!r} names nothing; leave the option out instead", ctx, param)
    return items
