"""The ``sgnlake`` command line (Typer). Stages are imported lazily per command,
so analysis commands work where PyTorch is not installed."""
