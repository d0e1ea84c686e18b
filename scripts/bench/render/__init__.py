"""Markdown from a results file: :func:`render` (the report); tables live in submodules."""

from scripts.bench.render.report import render

__all__ = ["render"]
