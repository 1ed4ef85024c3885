"""The ``equiseg`` command line. Logging is configured here (``-v``), never at import time elsewhere."""

from equiseg.cli.main import cli, main

__all__ = ["cli", "main"]
