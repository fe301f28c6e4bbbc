"""Pinned benchmark data (committed files, their generators ``make_*.py`` and README.md with
provenance); loaded and verified through :mod:`benchmarks.pinned_data`."""
