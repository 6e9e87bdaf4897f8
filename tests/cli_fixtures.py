"""Running the ``sgnlake`` command line in-process, for tests that check exit codes and output."""

from __future__ import annotations

import pytest


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the ``sgnlake`` entry point in-process; return (exit code, stdout, stderr)."""
    from sgnlake.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    code = e.value.code if isinstance(e.value.code, int) else (0 if e.value.code is None else 1)
    return code, out.out, out.err
