"""``sgnlake collect`` (train with SGD and store SGN snapshots) and ``sgnlake ls`` (list runs)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

# Which RunConfig field each collect option sets (for --resume: options not given take the stored value).
_FIELD_OF = {
    "model": "model",
    "depth": "model_args",
    "width": "model_args",
    "bias": "model_args",
    "model_arg": "model_args",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "n_train": "n_train",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "epochs": "epochs",
    "iterations": "iterations",
    "shuffle": "shuffle",
    "partition": "partition",
    "every": "schedule",
    "at": "schedule",
    "logspace": "schedule",
    "include_start": "schedule",
    "per_epoch": "schedule",
    "engine": "engine",
    "device": "device",
    "dtype": "storage",
    "codec": "storage",
    "level": "storage",
    "keepbits": "storage",
    "param_chunk": "storage",
    "tensors": "tensors",
    "memory_budget_mb": "memory_budget_mb",
}


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _model_args(depth, width, bias, model_arg) -> dict[str, Any]:
    from sgnlake.schema.errors import ConfigError

    args: dict[str, Any] = {}
    for item in model_arg or []:
        if "=" not in item:
            raise ConfigError(f"bad --model-arg {item!r}: use key=value, e.g. --model-arg width=64")
        k, v = item.split("=", 1)
        args[k.strip()] = _parse_value(v.strip())
    if depth is not None:
        args["depth"] = depth
    if width is not None:
        args["width"] = width
    if bias is not None:
        args["bias"] = bias
    return args


def _schedule(every, at, logspace, include_start, per_epoch):
    from sgnlake.schema.errors import ConfigError
    from sgnlake.schema.meta import Schedule

    given = [
        name for name, v in (("--every", every), ("--at", at), ("--logspace", logspace)) if v is not None
    ]
    if len(given) > 1:
        raise ConfigError(f"{given[0]} and {given[1]} both choose the schedule: give only one")
    if at is not None:
        try:
            steps = tuple(int(s) for s in at.replace(" ", "").split(",") if s)
        except ValueError:
            raise ConfigError(
                f"bad --at {at!r}: use comma-separated iterations, e.g. --at 0,100,500"
            ) from None
        return Schedule(kind="at", every=None, at=steps, include_start=include_start, per_epoch=per_epoch)
    if logspace is not None:
        return Schedule(
            kind="logspace", every=None, count=logspace, include_start=include_start, per_epoch=per_epoch
        )
    return Schedule(
        kind="every", every=100 if every is None else every, include_start=include_start, per_epoch=per_epoch
    )


def _explicit(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (typer vendors click, so compare the source by name)."""
    src = ctx.get_parameter_source(name)
    return src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT")


def register(app: typer.Typer) -> None:
    """Add ``collect`` and ``ls`` to ``app``."""

    @app.command("collect")
    def collect_cmd(
        ctx: typer.Context,
        lake: str = typer.Argument(
            ..., help="Lake: a local folder (created if absent) or an fsspec URL (s3://...)."
        ),
        run_id: str | None = typer.Option(
            None,
            "--run-id",
            help="Name of the run. Default: derived from the settings, e.g. lenet-b50-lr0.1-s0.",
        ),
        model: str = typer.Option(
            "fcn", "--model", "-m", help="Model: fcn or lenet (the registry). Default fcn."
        ),
        depth: int | None = typer.Option(
            None, "--depth", help="FCN: number of linear layers (>= 2). Default 3."
        ),
        width: int | None = typer.Option(None, "--width", help="FCN: units per hidden layer. Default 32."),
        bias: bool | None = typer.Option(
            None,
            "--bias/--no-bias",
            help="FCN: add biases to the linear layers. Default: none (paper's code).",
        ),
        model_arg: list[str] | None = typer.Option(
            None, "--model-arg", help="Other model argument as key=value (repeatable)."
        ),
        dataset: str = typer.Option(
            "mnist5k", "--dataset", help="mnist5k (embedded 5,000 digits), mnist, fashionmnist or cifar10."
        ),
        data_dir: str | None = typer.Option(
            None,
            "--data-dir",
            help="Folder with the dataset's standard files (MNIST IDX, CIFAR-10 python batches). "
            "Default ~/.cache/sgnlake/data.",
        ),
        download: bool = typer.Option(
            False, "--download", help="Download a missing dataset into --data-dir (needs torchvision)."
        ),
        n_train: int | None = typer.Option(
            None, "--n-train", help="Use only the first N training examples. Default: all."
        ),
        batch_size: int = typer.Option(
            50, "--batch-size", "-b", help="SGD minibatch size b (also the SGN minibatch size). Default 50."
        ),
        lr: float = typer.Option(0.1, "--lr", help="SGD learning rate (> 0, no momentum). Default 0.1."),
        seed: int = typer.Option(
            0, "--seed", help="Seed of initialisation, data order and snapshot partitions. Default 0."
        ),
        epochs: int | None = typer.Option(
            None, "--epochs", help="Training length in epochs. Default 1 (unless --iterations)."
        ),
        iterations: int | None = typer.Option(
            None, "--iterations", help="Training length in SGD steps (instead of --epochs)."
        ),
        shuffle: bool = typer.Option(
            True,
            "--shuffle/--no-shuffle",
            help="Reshuffle the training data every epoch (usual SGD; default) or keep the data order "
            "(paper's code).",
        ),
        partition: str = typer.Option(
            "permute",
            "--partition",
            help="Snapshot minibatches: 'permute' (fresh seeded permutation per snapshot; default) or "
            "'fixed' (data order, paper's code).",
        ),
        every: int | None = typer.Option(
            None, "--every", help="Take a snapshot every K SGD steps (K >= 1). Default 100."
        ),
        at: str | None = typer.Option(
            None, "--at", help="Take snapshots at these iterations instead, e.g. --at 0,100,500."
        ),
        logspace: int | None = typer.Option(
            None, "--logspace", help="Take N snapshots log-spaced between step 1 and the last step instead."
        ),
        include_start: bool = typer.Option(
            False, "--include-start", help="Also take a snapshot at iteration 0 (the initial weights)."
        ),
        per_epoch: bool = typer.Option(
            False,
            "--per-epoch",
            help="Count --every within each epoch (paper's code: every 100th step of each epoch).",
        ),
        engine: str = typer.Option(
            "auto",
            "--engine",
            help="Per-minibatch gradients: 'loop' (one backward each), 'vmap' (torch.func, batched) or "
            "'auto' (vmap on CUDA; on CPU the model's faster one). Default auto.",
        ),
        device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA if available)."),
        dtype: str = typer.Option(
            "float32", "--dtype", help="Stored dtype: float32 (default) or float16 (lossy)."
        ),
        codec: str = typer.Option(
            "zstd", "--codec", help="Lossless compressor: zstd (default), blosc-zstd (with shuffle) or none."
        ),
        level: int | None = typer.Option(
            None, "--level", help="Compression level. Default: zstd -1 (fast, lossless x1.2-1.5), blosc 1."
        ),
        keepbits: int | None = typer.Option(
            None,
            "--keepbits",
            help="BitRound: keep N float32 mantissa bits (1..23, lossy). Default: lossless.",
        ),
        param_chunk: int = typer.Option(
            8192,
            "--param-chunk",
            help="Parameters per stored chunk (each holds all M minibatches). Default 8192.",
        ),
        tensors: str | None = typer.Option(
            None, "--tensors", help="Store only these parameter tensors, comma-separated (e.g. fc1.weight)."
        ),
        memory_budget_mb: int | None = typer.Option(
            None,
            "--memory-budget-mb",
            help="Memory for one batched (vmap) gradient call, in MiB. Default: on CUDA half the free "
            "device memory (at most 16 GiB), else 512.",
        ),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Continue the run from its last committed snapshot (start it if absent); options not "
            "given keep their stored values.",
        ),
        stop_after: int | None = typer.Option(
            None, "--stop-after", help="Stop after N snapshots (status interrupted; continue with --resume)."
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            help="torch CPU threads (torch.set_num_threads). Default on CPU: one fewer than the available "
            "CPUs, leaving one for the background writer.",
        ),
        storage_option: list[str] | None = typer.Option(
            None, "--storage-option", "-o", help="fsspec storage option key=value for URL lakes (repeatable)."
        ),
        progress: bool | None = typer.Option(
            None, "--progress/--no-progress", help="Show a progress bar. Default: when stderr is a terminal."
        ),
    ) -> None:
        """Train a model with plain SGD and store its per-parameter SGN at scheduled iterations."""
        import dataclasses

        from sgnlake.collect.config import derive_run_id
        from sgnlake.collect.inventory import raw_bytes
        from sgnlake.collect.models import resolve_model_args
        from sgnlake.collect.runner import DEFAULT_MEMORY_BUDGET_MB, collect, stored_run_meta
        from sgnlake.schema.meta import RunConfig, StorageSpec
        from sgnlake.schema.store import parse_storage_options

        so = parse_storage_options(storage_option)
        margs = _model_args(depth, width, bias, model_arg)
        rid = run_id or derive_run_id(
            model,
            resolve_model_args(model, margs),
            dataset=dataset,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            n_train=n_train,
        )
        fields: dict[str, Any] = {
            "run_id": rid,
            "model": model,
            "model_args": margs,
            "dataset": dataset,
            "data_dir": data_dir,
            "n_train": n_train,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "epochs": epochs,
            "iterations": iterations,
            "shuffle": shuffle,
            "partition": partition,
            "schedule": _schedule(every, at, logspace, include_start, per_epoch),
            "engine": engine,
            "device": device,
            "storage": StorageSpec(
                dtype=dtype, codec=codec, level=level, keepbits=keepbits, param_chunk=param_chunk
            ),
            "tensors": tuple(t.strip() for t in tensors.split(",") if t.strip()) if tensors else (),
            "memory_budget_mb": DEFAULT_MEMORY_BUDGET_MB if memory_budget_mb is None else memory_budget_mb,
        }
        if resume:
            stored = stored_run_meta(lake, rid, storage_options=so)
            if stored is not None:
                given = {_FIELD_OF[p] for p in _FIELD_OF if _explicit(ctx, p)}
                for f in dataclasses.fields(RunConfig):
                    if f.name == "model_args":
                        fields[f.name] = {**dict(stored.config.model_args), **margs}
                    elif f.name not in given and f.name != "run_id":
                        fields[f.name] = getattr(stored.config, f.name)
        config = RunConfig(**fields)
        show = sys.stderr.isatty() if progress is None else progress
        try:
            meta = collect(
                lake,
                config,
                resume=resume,
                progress=show,
                storage_options=so,
                stop_after=stop_after,
                download=download,
                threads=threads,
                auto_budget=memory_budget_mb is None,
            )
        except KeyboardInterrupt:
            typer.echo(
                f"interrupted: run {rid!r} keeps its committed snapshots; continue with: "
                f"sgnlake collect {lake} --run-id {rid} --resume",
                err=True,
            )
            raise typer.Exit(130) from None
        from sgnlake.collect.inventory import list_runs

        row = next((r for r in list_runs(lake, storage_options=so) if r["run_id"] == rid), None)
        size = f", {row['stored_bytes'] / 1e6:.1f} MB stored" if row else ""
        ratio = f" (ratio {row['ratio']:.2f})" if row and row["ratio"] else ""
        typer.echo(
            f"run {rid}: {meta.status}, {meta.committed}/{len(meta.planned_iterations)} snapshots of "
            f"{meta.n_minibatches} minibatches, {raw_bytes(meta) / 1e6:.1f} MB uncompressed{size}{ratio}"
        )
        if meta.status != "complete" and meta.reason:
            typer.echo(f"  {meta.reason}")

    @app.command("ls")
    def ls_cmd(
        lake: str = typer.Argument(..., help="Lake: a local folder or an fsspec URL."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list of runs instead of a table."),
        storage_option: list[str] | None = typer.Option(
            None, "--storage-option", "-o", help="fsspec storage option key=value for URL lakes (repeatable)."
        ),
    ) -> None:
        """List the runs of a lake: id, model, dataset, batch, snapshots, status, stored size, ratio."""
        from sgnlake.collect.inventory import format_table, list_runs
        from sgnlake.schema.store import parse_storage_options

        rows = list_runs(lake, storage_options=parse_storage_options(storage_option))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        elif not rows:
            typer.echo("the lake has no runs yet")
        else:
            typer.echo(format_table(rows))
