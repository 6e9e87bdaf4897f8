"""``sgnlake validate-estimators``: the estimators on synthetic alpha-stable samples."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sgnlake.schema.errors import ConfigError


def _parse_list(text: str, kind: type, option: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a comma-separated list of {kind.__name__}s: e.g. {option} 100,1200"
        ) from None
    if not values:
        raise ConfigError(f"{option} is empty: pass a comma-separated list, e.g. {option} 100,1200")
    return values


def register(app: typer.Typer) -> None:
    @app.command("validate-estimators")
    def validate_estimators(
        sizes: str = typer.Option(
            "100,1200,60000",
            "--sizes",
            metavar="LIST",
            help="Comma-separated sample sizes n (minibatch counts M).",
        ),
        alphas: str = typer.Option(
            "1.1,1.3,1.5,1.7,1.9,2.0",
            "--alphas",
            metavar="LIST",
            help="Comma-separated true tail indices in (0, 2].",
        ),
        n_params: int = typer.Option(500, "--n-params", min=1, help="Independent parameters per (alpha, n)."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        out: Path = typer.Option(
            None, "--out", "-O", metavar="FILE", help="Also write the markdown table to this file."
        ),
        sparse_share: float = typer.Option(
            0.0,
            "--sparse-share",
            min=0.0,
            max=0.9,
            help="Also plant this share of degenerate parameters (point mass on 60-99%% of the samples) "
            "and print how the degenerate rule finds them (precision, recall) and the medians with and "
            "without them (mohammadi, k1=paper).",
        ),
    ) -> None:
        """Draw symmetric alpha-stable samples (Chambers-Mallows-Stuck, float32 like the lake)
        and print each estimator's bias, spread, RMSE and share of estimates > 2 per (alpha, n)
        as a markdown table."""
        from sgnlake.analyze.validation import (
            format_sparse_table,
            format_table,
            run_validation,
            sparse_validation,
        )

        n_list = _parse_list(sizes, int, "--sizes")
        a_list = _parse_list(alphas, float, "--alphas")
        for a in a_list:
            if not 0 < a <= 2:
                raise ConfigError(f"--alphas value {a} is outside (0, 2]: stable laws need 0 < alpha <= 2")
        show = sys.stderr.isatty()
        rows = run_validation(
            sizes=n_list,
            alphas=a_list,
            n_params=n_params,
            seed=seed,
            progress=(lambda msg: typer.echo(msg, err=True)) if show else None,
        )
        table = format_table(rows)
        if sparse_share > 0:
            srows = sparse_validation(n_list, a_list, n_params=n_params, share=sparse_share, seed=seed)
            table += f"\nDegenerate parameters planted (share {sparse_share:g}):\n\n"
            table += format_sparse_table(srows)
        typer.echo(table, nl=False)
        if out is not None:
            try:
                out.write_text(table)
            except OSError as e:
                raise ConfigError(f"cannot write {out}: {e.strerror}; pass a writable --out path") from None
