"""`python -m mpc` runs the command line."""
from mpc.driver.cli import entry

entry()
