"""`python -m mpc` runs the command line."""
from mpc.cli import entry

entry()
