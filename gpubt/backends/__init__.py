"""Backends execute column-graph nodes over a market; each is one module behind `Backend`."""
