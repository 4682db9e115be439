"""The `mpc` command line's entry points (`mpc.cli:entry`, `mpc.cli.main`); the code is mpc.driver.cli."""
from mpc.driver.cli import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
