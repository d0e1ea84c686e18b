"""Benchmark accel against curl, aria2c and axel on loopback servers.

Not a test: nothing is asserted.  ``python3 -m scripts.bench`` runs the scenarios, saves the
raw measurements as JSON and prints a Markdown report rendered from that file; ``render``
and ``compare`` work on saved files (see :mod:`scripts.bench.cli`).  All servers listen on
127.0.0.1 only.

Layout: :mod:`.process` runs and measures one child, :mod:`.tools` knows how each tool is
invoked, :mod:`.servers` is the one import of the shared test servers, :mod:`.endpoints`
wraps them with byte accounting, :mod:`.data` and :mod:`.verify` make and check files,
:mod:`.scenarios` holds one scenario per module, :mod:`.runner` interleaves the tools,
:mod:`.results` is the JSON file, :mod:`.render` and :mod:`.compare` turn it into Markdown.
"""
