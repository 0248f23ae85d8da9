"""Command-line entry points (absl apps): lrsjax-train, lrsjax-certify, lrsjax-report.

Each module is thin: flags in, one library call, results out. Console scripts are declared in
pyproject.toml and call the module's `run()`.
"""

__all__: list[str] = []  # entry points only: lrsjax.cli.train, .certify, .report
