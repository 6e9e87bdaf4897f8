"""``sgnlake collect``: train with SGD (or momentum, Adam) and store SGN snapshots."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import typer

from sgnlake.schema.defaults import field_default
from sgnlake.schema.meta import DEFAULT_LEVELS

from .options import lake_arg, storage_opt

#: The RunConfig field path each collect option sets: its default comes from the dataclass
#: (:func:`~sgnlake.schema.defaults.field_default`) and, with --resume, an option not given
#: keeps the stored value of its field.
OPTION_PATHS = {
    "model": "model",
    "depth": "model_args.depth",
    "width": "model_args.width",
    "bias": "model_args.bias",
    "model_arg": "model_args",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "n_train": "n_train",
    "batch_size": "batch_size",
    "lr": "lr",
    "optimizer": "optimizer",
    "momentum": "momentum",
    "betas": "betas",
    "weight_decay": "weight_decay",
    "seed": "seed",
    "epochs": "epochs",
    "iterations": "iterations",
    "shuffle": "shuffle",
    "partition": "partition",
    "every": "schedule.every",
    "at": "schedule.at",
    "logspace": "schedule.count",
    "include_start": "schedule.include_start",
    "per_epoch": "schedule.per_epoch",
    "engine": "engine",
    "device": "device",
    "dtype": "storage.dtype",
    "codec": "storage.codec",
    "level": "storage.level",
    "keepbits": "storage.keepbits",
    "param_chunk": "storage.param_chunk",
    "param_sample": "storage.param_sample",
    "store": "storage.store",
    "tensors": "tensors",
    "memory_budget_mb": "memory_budget_mb",
}
_MODEL_DEFAULT = " Default: the model's own (stored in the run's model_args; see 'sgnlake ls --json')."
#: The CLI's own default model (RunConfig.model has none).
DEFAULT_MODEL = "fcn"
#: Snapshots of a plain ``sgnlake collect LAKE`` (no --every/--at/--logspace): log-spaced over
#: the run, so alpha can be drawn over iterations (Schedule's dataclass default, every 100 steps,
#: gives one snapshot for one epoch of the embedded data).
DEFAULT_SNAPSHOTS = 10


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the run is marked interrupted) but exiting with 143."""

    reason = "terminated (SIGTERM)"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _default(option: str) -> Any:
    """The default of collect option ``option``: its RunConfig field's dataclass default."""
    model_arg = OPTION_PATHS[option].startswith("model_args")
    return None if model_arg else field_default(OPTION_PATHS[option])


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


def _betas(text: str | None) -> tuple[float, float] | None:
    """``--betas 0.9,0.999`` as a pair of floats (None when not given)."""
    from sgnlake.schema.errors import ConfigError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 2:
        raise ConfigError(f"bad --betas {text!r}: use two comma-separated numbers, e.g. --betas 0.9,0.999")
    return (values[0], values[1])


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
    if every is None:  # no schedule option: enough snapshots to plot over iterations
        return Schedule(
            kind="logspace",
            every=None,
            count=DEFAULT_SNAPSHOTS,
            include_start=include_start,
            per_epoch=per_epoch,
        )
    return Schedule(kind="every", every=every, include_start=include_start, per_epoch=per_epoch)


def _explicit(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (typer vendors click, so compare the source by name)."""
    src = ctx.get_parameter_source(name)
    return src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT")


def register(app: typer.Typer) -> None:
    """Add ``collect`` and ``ls`` to ``app``."""

    @app.command("collect")
    def collect_cmd(
        ctx: typer.Context,
        lake: str = lake_arg("Lake: a local folder (created if absent) or an fsspec URL (s3://...)."),
        run_id: str | None = typer.Option(
            None,
            "--run-id",
            help="Name of the run. Default: derived from the settings (model, dataset, model arguments, "
            "n_train, batch size, learning rate when not the default, seed), e.g. fcn-d3-w32-b50-s0; "
            "'sgnlake sweep' and 'sgnlake demo' name runs the same way.",
        ),
        model: str = typer.Option(
            DEFAULT_MODEL, "--model", "-m", help="Model: fcn, lenet, resnet or vit (the registry)."
        ),
        depth: int | None = typer.Option(
            None, "--depth", help=f"FCN: number of linear layers (>= 2).{_MODEL_DEFAULT}"
        ),
        width: int | None = typer.Option(
            None, "--width", help=f"FCN: units per hidden layer.{_MODEL_DEFAULT}"
        ),
        bias: bool | None = typer.Option(
            None,
            "--bias/--no-bias",
            help=f"FCN: add biases to the linear layers (the paper's code has none).{_MODEL_DEFAULT}",
        ),
        model_arg: list[str] | None = typer.Option(
            None, "--model-arg", help="Other model argument as key=value (repeatable)."
        ),
        dataset: str = typer.Option(
            _default("dataset"),
            "--dataset",
            help="mnist5k (embedded 5,000 digits), mnist, fashionmnist or cifar10.",
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
            _default("batch_size"),
            "--batch-size",
            "-b",
            help="SGD minibatch size b (also the SGN minibatch size).",
        ),
        lr: float = typer.Option(_default("lr"), "--lr", help="Learning rate of the optimizer (> 0)."),
        optimizer: str = typer.Option(
            _default("optimizer"),
            "--optimizer",
            help="Update rule: 'sgd' (plain SGD, the paper's), 'momentum' (SGD with heavy-ball momentum) "
            "or 'adam'. The SGN definition does not depend on it.",
        ),
        momentum: float | None = typer.Option(
            None, "--momentum", help="Momentum of --optimizer momentum, in [0, 1). Default 0.9."
        ),
        betas: str | None = typer.Option(
            None, "--betas", help="Adam's beta1,beta2, e.g. 0.9,0.999 (the default)."
        ),
        weight_decay: float = typer.Option(
            _default("weight_decay"), "--weight-decay", help="L2 weight decay of the optimizer (>= 0)."
        ),
        seed: int = typer.Option(
            _default("seed"), "--seed", help="Seed of initialisation, data order and snapshot partitions."
        ),
        epochs: int | None = typer.Option(
            None, "--epochs", help="Training length in epochs. Default 1 (unless --iterations)."
        ),
        iterations: int | None = typer.Option(
            None, "--iterations", help="Training length in SGD steps (instead of --epochs)."
        ),
        shuffle: bool = typer.Option(
            _default("shuffle"),
            "--shuffle/--no-shuffle",
            help="Reshuffle the training data every epoch (usual SGD) or keep the data order (paper's code).",
        ),
        partition: str = typer.Option(
            _default("partition"),
            "--partition",
            help="Snapshot minibatches: 'permute' (fresh seeded permutation per snapshot) or "
            "'fixed' (data order, paper's code).",
        ),
        every: int | None = typer.Option(
            None,
            "--every",
            metavar="K",
            help="Take a snapshot every K SGD steps (K >= 1). Default (no --every, --at or --logspace): "
            f"--logspace {DEFAULT_SNAPSHOTS}.",
        ),
        at: str | None = typer.Option(
            None,
            "--at",
            metavar="LIST",
            help="Take snapshots at these iterations instead, e.g. --at 0,100,500.",
        ),
        logspace: int | None = typer.Option(
            None,
            "--logspace",
            metavar="N",
            help="Take N snapshots log-spaced between step 1 and the last step instead.",
        ),
        include_start: bool = typer.Option(
            _default("include_start"),
            "--include-start",
            help="Also take a snapshot at iteration 0 (the initial weights).",
        ),
        per_epoch: bool = typer.Option(
            _default("per_epoch"),
            "--per-epoch",
            help="Count --every within each epoch (paper's code: every 100th step of each epoch).",
        ),
        engine: str = typer.Option(
            _default("engine"),
            "--engine",
            help="Per-minibatch gradients: 'loop' (one backward each), 'vmap' (torch.func, batched) or "
            "'auto' (vmap on CUDA; on CPU the model's faster one).",
        ),
        device: str = typer.Option(
            _default("device"), "--device", help="cpu, cuda, cuda:N or auto (CUDA if available)."
        ),
        dtype: str = typer.Option(
            _default("dtype"), "--dtype", help="Stored dtype: float32 or float16 (lossy)."
        ),
        codec: str = typer.Option(
            _default("codec"), "--codec", help="Lossless compressor: zstd, blosc-zstd (with shuffle) or none."
        ),
        level: int | None = typer.Option(
            None,
            "--level",
            help=f"Compression level. Default: zstd {DEFAULT_LEVELS['zstd']} (fast; lossless MNIST SGN x1.1-1.5, "
            f"x1.0 without exact zeros), blosc {DEFAULT_LEVELS['blosc-zstd']}. A resumed run keeps its own.",
        ),
        keepbits: int | None = typer.Option(
            None,
            "--keepbits",
            help="BitRound: keep N float32 mantissa bits (1..23, lossy). Default: lossless.",
        ),
        param_chunk: int = typer.Option(
            _default("param_chunk"),
            "--param-chunk",
            help="Parameters per stored chunk (each holds all M minibatches).",
        ),
        param_sample: str | None = typer.Option(
            None,
            "--param-sample",
            help="Store only a seeded random sample of each tensor's parameters: a fraction (0.0025) or a "
            "count per tensor (1000); their flat indices are the param coordinate. See docs/big-models.md.",
        ),
        store: str = typer.Option(
            _default("store"),
            "--store",
            help="sgn: store the SGN; alpha: compute the per-parameter Mohammadi alpha on the device and "
            "store only it (plus the SGN of --param-sample, if given). See docs/big-models.md.",
        ),
        tensors: str | None = typer.Option(
            None, "--tensors", help="Store only these parameter tensors, comma-separated (e.g. fc1.weight)."
        ),
        memory_budget_mb: int | None = typer.Option(
            None,
            "--memory-budget-mb",
            help="Memory for one batched (vmap) gradient call, in MiB. Default: on CUDA half the free "
            f"device memory (at most 16 GiB), else {_default('memory_budget_mb')}.",
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
        storage_option: list[str] | None = storage_opt(),
        progress: bool | None = typer.Option(
            None, "--progress/--no-progress", help="Show a progress bar. Default: when stderr is a terminal."
        ),
    ) -> None:
        """Train a model (plain SGD by default) and store its per-parameter SGN at scheduled iterations."""
        import dataclasses

        from sgnlake.collect.config import compatible_run, default_run_id, resume_config
        from sgnlake.collect.runner import collect
        from sgnlake.collect.sampling import parse_param_sample
        from sgnlake.collect.sweep import existing_runs
        from sgnlake.schema.inventory import raw_bytes
        from sgnlake.schema.meta import RunConfig, StorageSpec
        from sgnlake.schema.store import parse_storage_options

        so = parse_storage_options(storage_option)
        opts = {name: ctx.params[name] for name in OPTION_PATHS}
        top = {
            path: opts[name]
            for name, path in OPTION_PATHS.items()
            if "." not in path and path != "model_args"
        }
        top["betas"] = _betas(betas)
        top["tensors"] = tuple(t.strip() for t in tensors.split(",") if t.strip()) if tensors else ()
        if memory_budget_mb is None:
            top["memory_budget_mb"] = _default("memory_budget_mb")
        storage = {p.split(".")[1]: opts[n] for n, p in OPTION_PATHS.items() if p.startswith("storage.")}
        storage["param_sample"] = parse_param_sample(param_sample)
        config = RunConfig(
            run_id=run_id or "run",
            model_args=_model_args(depth, width, bias, model_arg),
            schedule=_schedule(every, at, logspace, include_start, per_epoch),
            storage=StorageSpec(**storage),
            **top,
        )
        stored = None
        if run_id is None:  # the derived id, or the run with these settings stored under an older id
            have = existing_runs(lake, so)
            config = dataclasses.replace(config, run_id=default_run_id(config))
            rid = compatible_run(config, have) or config.run_id
            if rid != config.run_id:
                typer.echo(
                    f"note: run {rid!r} in the lake has these settings (an id of an older sgnlake)", err=True
                )
                config = dataclasses.replace(config, run_id=rid)
            stored = have.get(rid)
        elif resume:
            stored = existing_runs(lake, so).get(run_id)
        rid = config.run_id
        if resume and stored is not None:
            given = {OPTION_PATHS[name].split(".")[0] for name in OPTION_PATHS if _explicit(ctx, name)}
            config = resume_config(stored.config, config, explicit=given)
        show = sys.stderr.isatty() if progress is None else progress
        try:
            with sigterm_as_interrupt():
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
        except KeyboardInterrupt as e:
            typer.echo(
                f"interrupted: run {rid!r} keeps its committed snapshots; continue with: "
                f"sgnlake collect {lake} --run-id {rid} --resume",
                err=True,
            )
            raise typer.Exit(143 if isinstance(e, Terminated) else 130) from None
        from sgnlake.schema.inventory import list_runs

        row = next((r for r in list_runs(lake, storage_options=so) if r["run_id"] == rid), None)
        size = f", {row['stored_bytes'] / 1e6:.1f} MB stored" if row else ""
        ratio = f" (ratio {row['ratio']:.2f})" if row and row["ratio"] else ""
        typer.echo(
            f"run {rid}: {meta.status}, {meta.committed}/{len(meta.planned_iterations)} snapshots of "
            f"{meta.n_minibatches} minibatches, {raw_bytes(meta) / 1e6:.1f} MB uncompressed{size}{ratio}"
        )
        if meta.status != "complete" and meta.reason:
            typer.echo(f"  {meta.reason}")
