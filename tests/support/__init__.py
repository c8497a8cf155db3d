"""Helpers the tests and benchmarks share; test modules import from here, never
from each other."""
