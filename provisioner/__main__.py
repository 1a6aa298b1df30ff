"""``python -m provisioner``: the CLI."""

from provisioner.cli import main

main()
