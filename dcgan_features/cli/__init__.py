"""The ``dcgan-features`` command: parse, check, call the library, nothing else.

One module per command group; each registers its commands on the :func:`.group.cli`
group (a new command is a new module imported below):

- :mod:`.info`        ``architectures``, ``datasets``
- :mod:`.train`       ``train``
- :mod:`.extract`     ``extract``
- :mod:`.probe`       ``probe``
- :mod:`.generate`    ``import-theano``, ``sample``, ``interpolate``, ``arithmetic``
- :mod:`.look`        ``visualize``, ``neighbours``, ``forget``
- :mod:`.reproduce`   ``reproduce``
- :mod:`.quickstart`  ``quickstart``

Every user error (a :class:`~dcgan_features.core.errors.UserError` from the library or a
click usage error) becomes one ``error: ...`` line on stderr and a non-zero exit.
Run as ``dcgan-features``, ``python -m dcgan_features.cli`` or ``torchrun -m dcgan_features.cli``.
"""

from __future__ import annotations

import sys

import click

from ..core.errors import UserError
from . import extract, generate, info, look, probe, quickstart, reproduce, train  # noqa: F401  (register the commands)
from .group import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line on stderr and a non-zero exit for any user error."""
    try:
        rv = cli.main(args=argv, prog_name="dcgan-features", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        hint = f" (see: {e.ctx.command_path} --help)" if isinstance(e, click.UsageError) and e.ctx else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except UserError as e:
        if not getattr(e, "quiet", False):  # a torchrun group's shared error: rank 0 prints it
            click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
