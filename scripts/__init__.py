"""Scripts that ship with accel: the example download manager, a test server, the benchmark.

A package so that ``python3 -m scripts.bench`` runs from the repository root.
"""
