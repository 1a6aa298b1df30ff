"""The ``provisioner`` command line: one click group, shared options, one module per
family of commands."""

from provisioner.cli.main import cli, main

__all__ = ["cli", "main"]
