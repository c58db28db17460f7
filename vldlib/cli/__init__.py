"""Command-line entry points (``python -m vldlib train|describe|book``), one module each."""
