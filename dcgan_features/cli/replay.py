"""``--config FILE``: a command's options read from a JSON file, the command line overriding them.

The file is a run's ``config.json`` (``train`` writes one: its options under ``"config"``) or a
JSON object the user writes, option names as keys (``"batch_size": 64`` or ``"batch-size": 64``).
Its values become the command's defaults (click's ``default_map``), so every flag given on the
command line wins. ``resume`` and ``overwrite`` are actions, not settings: a replay never takes them
from the file. A key that is not an option of the command is one line naming it.
"""

from __future__ import annotations

import json

import click

from ..core.errors import UserError

ACTIONS = ("resume", "overwrite", "progress")  # never replayed: what to do with a folder, and not options


def read_options(path: str, command: click.Command) -> dict:
    """The option values of ``path`` for ``command`` (keys as click parameter names)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"--config {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"--config {path} is not JSON ({str(e).splitlines()[0]}); write a JSON object of "
                        f"option names and values, or pass a run's config.json") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]  # a run's config.json
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a JSON object of option names and values")
    names: dict[str, str] = {}  # parameter name and every flag spelling (features, --features, probe) -> name
    for p in command.params:
        if p.name:
            names[p.name] = p.name
            for opt in getattr(p, "opts", []):
                names[opt.lstrip("-").replace("-", "_")] = p.name
    out, unknown = {}, []
    for key, value in data.items():
        spelled = str(key).lstrip("-").replace("-", "_")
        if spelled in ACTIONS or spelled == "config":
            continue
        if spelled not in names:
            unknown.append(str(key))
        elif value is not None:
            out[names[spelled]] = tuple(value) if isinstance(value, list) else value
    if unknown:
        raise UserError(f"--config {path}: {', '.join(unknown)} {'is not an option' if len(unknown) == 1 else 'are not options'} "
                        f"of `{command.name}`")
    return out


def config_option(f):
    """Add ``--config FILE`` (eager: read before the other options take their defaults)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.default_map = {**(ctx.default_map or {}), **read_options(value, ctx.command)}

    return click.option("--config", type=click.Path(dir_okay=False), default=None, is_eager=True,
                        expose_value=False, callback=callback,
                        help="Read the options from this JSON file (a run's config.json, or your own "
                             "{\"option\": value} object); flags given here override it.")(f)
