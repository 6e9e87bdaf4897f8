"""``sgnlake copy``: copy runs between lakes (local <-> object storage), object by object."""

from __future__ import annotations

import typer

from .options import parse_runs, runs_opt, storage_opt

_HELP = """Copy runs (each with its results and checkpoint) from lake SRC to lake DST.

SRC and DST are local paths or fsspec URLs (s3://bucket/lake, gs://..., file://...).
Stored objects are copied unchanged, so chunks, codecs and attributes are identical
in both lakes. DST is created if missing. A rerun copies only missing objects
(checked by size), so an interrupted copy is resumed by running it again. A run
that exists in DST with different metadata is never overwritten.

Storage options: --storage-option applies to SRC, and to DST too unless
--dst-storage-option is given; credentials may also come from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).
"""


def register(app: typer.Typer) -> None:
    """Add the ``copy`` command to ``app``."""

    @app.command("copy", help=_HELP)
    def copy(
        src: str = typer.Argument(..., metavar="SRC", help="Source lake: path or URL."),
        dst: str = typer.Argument(
            ..., metavar="DST", help="Destination lake: path or URL (created if missing)."
        ),
        runs: list[str] = runs_opt("Run ids or glob patterns of the runs to copy; default all."),
        storage_option: list[str] = storage_opt(
            "fsspec option KEY=VALUE for SRC (and DST unless --dst-storage-option), "
            "e.g. client_kwargs.endpoint_url=http://127.0.0.1:9000"
        ),
        dst_storage_option: list[str] = typer.Option(
            None,
            "--dst-storage-option",
            metavar="KEY=VALUE",
            show_default=False,
            help="fsspec option KEY=VALUE for DST (repeatable).",
        ),
        jobs: int = typer.Option(16, "--jobs", "-j", min=1, help="Objects transferred concurrently."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        from sgnlake.schema.store import is_url, parse_storage_options
        from sgnlake.schema.transfer import RunCopy, copy_runs

        # --storage-option reaches whichever side is an object store (a local lake takes none)
        opts = parse_storage_options(storage_option)
        src_opts = opts if is_url(src) or not is_url(dst) else {}
        dst_opts = parse_storage_options(dst_storage_option) if dst_storage_option else None
        if dst_opts is None:
            dst_opts = opts if is_url(dst) else {}

        def say(rc: RunCopy) -> None:
            typer.echo(
                f"{rc.run_id}: {rc.status}, {rc.copied}/{rc.objects} objects written, "
                f"{_size(rc.bytes_copied)}"
            )

        report = copy_runs(
            src,
            dst,
            runs=parse_runs(runs),
            src_storage_options=src_opts,
            dst_storage_options=dst_opts,
            progress=progress,
            jobs=jobs,
            on_run=say,
        )
        typer.echo(
            f"copied {len(report.runs)} run(s) to {dst}: {report.copied} objects, "
            f"{_size(report.bytes_copied)} written"
        )


def _size(n: int) -> str:
    """Human-readable byte count."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"
