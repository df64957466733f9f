"""What every fdrl command shares on top of click: one-line usage errors, --version.

click's own usage errors (a bad choice, `-n abc`, a missing argument) print a usage
block and a blank line; fdrl's rule is one line naming the problem and the fix, exit 2,
as `cli_errors` does for everything else (errors.py).
"""
from __future__ import annotations

import sys

import click

from . import __version__
from .errors import INTERRUPT_EXIT, fail


class Command(click.Command):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            fail(self.name, "interrupted", INTERRUPT_EXIT)
        except click.ClickException as e:
            fail(self.name, f"{e.format_message()} (see {self.name} --help)")
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def command(name: str):
    """@command("fdrl-infer"): a click command with -h/--help, --version and one-line errors."""
    def wrap(f):
        f = click.version_option(__version__, "--version", prog_name=name, message="%(prog)s %(version)s")(f)
        return click.command(name=name, cls=Command, context_settings={"help_option_names": ["-h", "--help"]})(f)
    return wrap
