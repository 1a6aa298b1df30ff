"""provisioner: keep GPU nodes ready before users connect."""

__version__ = "0.1.0"
