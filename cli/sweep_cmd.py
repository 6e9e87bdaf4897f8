"""``sgnlake sweep``: run a grid of collection runs (a preset or a TOML file) into one lake.

Exit codes: 0 all runs complete, 1 some runs failed, 2 usage errors, 130 interrupted.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import typer

from .options import lake_arg, storage_opt


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        lake: str = lake_arg("Lake path or fsspec URL (created if missing).", default=None),
        preset: str = typer.Option(
            None, "--preset", "-p", metavar="NAME", help="A shipped grid (see --list-presets)."
        ),
        config: Path = typer.Option(
            None, "--config", "-c", metavar="FILE", help="A grid file: [base] RunConfig fields, [grid] lists."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="List runs, snapshots and the estimated lake size; run nothing."
        ),
        jobs: int = typer.Option(
            1, "--jobs", "-j", min=1, help="Processes running runs in parallel on CPU (GPU: one at a time)."
        ),
        only: str = typer.Option(
            None, "--only", metavar="GLOB", help="Only runs whose id matches this glob, e.g. 'fcn-d3-*'."
        ),
        list_presets: bool = typer.Option(False, "--list-presets", help="List the shipped presets."),
        show_preset: str = typer.Option(
            None,
            "--show-preset",
            metavar="NAME",
            help="Print a preset's TOML (copy it to make your own grid).",
        ),
        data_dir: str = typer.Option(
            None,
            "--data-dir",
            metavar="DIR",
            help="Folder with MNIST / FashionMNIST / CIFAR-10 files (full datasets).",
        ),
        download: bool = typer.Option(
            False, "--download", help="Download missing dataset files into --data-dir (needs torchvision)."
        ),
        n_train: int = typer.Option(None, "--n-train", min=1, help="Use only the first N training examples."),
        every: int = typer.Option(
            None, "--every", min=1, help="Snapshot every N steps (overrides the grid's)."
        ),
        tensors: str = typer.Option(
            None,
            "--tensors",
            metavar="LIST",
            help="Store only these parameter tensors, comma separated (fc3.weight,...).",
        ),
        keepbits: int = typer.Option(
            None, "--keepbits", help="Lossy BitRound to this many mantissa bits (1..23)."
        ),
        dtype: str = typer.Option(None, "--dtype", help="Stored dtype: float32 or float16 (lossy)."),
        device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 ..."),
        engine: str = typer.Option(None, "--engine", help="Per-minibatch gradient engine: auto, loop, vmap."),
        set_: list[str] = typer.Option(
            None,
            "--set",
            metavar="PATH=VALUE",
            help="Override a field: PATH=VALUE (lr=0.05, schedule.every=500) or grid.PATH=[...] (repeatable).",
        ),
        storage_option: list[str] = storage_opt(),
        threads: int = typer.Option(
            None,
            "--threads",
            min=1,
            help="Torch threads per CPU run (default: cores / --jobs - 1, at least 1; the writer thread needs a core).",
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        scheduler: str = typer.Option(
            None,
            "--scheduler",
            help="Run each run as a task on an existing Dask cluster (tcp://HOST:PORT); the lake must be "
            "reachable from its workers (shared disk or S3). --jobs is ignored.",
        ),
        resources: list[str] = typer.Option(
            None,
            "--resources",
            help="Dask resources each run needs on its worker, NAME=AMOUNT (e.g. GPU=1; repeatable).",
        ),
        param_sample: str = typer.Option(
            None, "--param-sample", help="Store a seeded sample of each tensor's parameters (0.0025 or 1000)."
        ),
        store: str = typer.Option(None, "--store", help="sgn (default) or alpha (see docs/big-models.md)."),
    ) -> None:
        """Run every run of a grid into LAKE: complete runs are skipped, interrupted ones resume.

        A grid is a TOML file with a [base] table of run fields and a [grid] table of
        lists; the runs are the product of the lists. Runs are named as 'sgnlake
        collect' names them (fcn-d3-w32-b50-s0; the grid's axes outside model,
        dataset, model arguments, n_train, batch, lr and seed are added, e.g.
        every50) unless the file gives a run_id template.
        Presets: paper-fcn, paper-lenet (the paper's studies on full MNIST) and
        paper-fcn-small, paper-lenet-small (the same on the embedded data, minutes
        on 2 CPU cores). Failed runs are reported and not retried in the same
        invocation; rerunning the command retries (resumes) them.
        """
        from sgnlake.collect import sweep as sw
        from sgnlake.collect.sampling import parse_param_sample
        from sgnlake.collect.sweep.cluster import parse_resources
        from sgnlake.schema import ConfigError
        from sgnlake.schema.store import parse_storage_options

        if list_presets:
            for name in sw.preset_names():
                typer.echo(f"{name:<20} {sw.preset_description(name)}")
            return
        if show_preset:
            typer.echo(sw.preset_text(show_preset), nl=False)
            return
        if (preset is None) == (config is None):
            raise ConfigError("give exactly one of --preset NAME or --config FILE (see --list-presets)")
        spec = sw.load_preset(preset) if preset else sw.load_spec(config)
        if lake is None and not dry_run:
            raise ConfigError("missing LAKE: sgnlake sweep LAKE --preset NAME")
        overrides: list[str | tuple[str, object]] = list(set_ or [])
        for path, value in (
            ("data_dir", data_dir),
            ("n_train", n_train),
            ("schedule.every", every),
            ("storage.keepbits", keepbits),
            ("storage.dtype", dtype),
            ("device", device),
            ("engine", engine),
            ("storage.param_sample", parse_param_sample(param_sample)),
            ("storage.store", store),
        ):
            if value is not None:
                overrides.append((path, value))
        if every is not None:
            overrides.append(("schedule.kind", "every"))
        if tensors is not None:
            overrides.append(("tensors", [t.strip() for t in tensors.split(",") if t.strip()]))
        need = parse_resources(resources)
        if need and scheduler is None:
            raise ConfigError("--resources needs --scheduler tcp://HOST:PORT (a Dask cluster)")
        spec = sw.with_overrides(spec, overrides)
        configs = sw.expand(spec)
        if only:
            configs = [c for c in configs if fnmatch.fnmatchcase(c.run_id, only)]
            if not configs:
                raise ConfigError(f"--only {only!r} matches no run of the sweep: check the pattern")
        plans = sw.plan(configs)
        if dry_run:
            typer.echo(f"sweep {spec.name}: {spec.description}" if spec.description else f"sweep {spec.name}")
            typer.echo(sw.format_plan(plans))
            if lake is not None:
                have = sw.existing_runs(lake, parse_storage_options(storage_option))
                plans = sw.adopt_stored_ids(plans, have)  # runs stored under ids of an older sgnlake
                done = [p.run_id for p in plans if p.run_id in have and sw.is_complete(have[p.run_id])]
                part = [p.run_id for p in plans if p.run_id in have and p.run_id not in done]
                typer.echo(
                    f"in {lake}: {len(done)} of these runs complete (skipped), {len(part)} to resume, "
                    f"{len(plans) - len(done) - len(part)} new"
                )
            return
        sw.prepare_data(configs, download=download)
        summary = sw.run_sweep(
            lake,
            plans,
            jobs=jobs,
            progress=progress and sys.stderr.isatty(),
            storage_options=parse_storage_options(storage_option),
            threads=threads,
            echo=typer.echo,
            scheduler=scheduler,
            resources=need or None,
        )
        typer.echo(summary.format())
        if summary.interrupted:
            raise typer.Exit(130)
        if summary.n_failed:
            raise typer.Exit(1)
