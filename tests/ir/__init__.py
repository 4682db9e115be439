"""Tests of the IR core: rewrite primitives, pass manager, text round trips."""
