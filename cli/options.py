"""Shared option declarations and parsing of the ``sgnlake`` commands.

One home for the conventions every command follows:

- short options mean the same in every command (:data:`SHORT_OPTIONS`);
- metavars are Click-style upper-case words (``LAKE``, ``RUN``, ``KEY=VALUE``,
  ``INTEGER``...), never ``{lake}`` or ``<list[str]>``;
- ``--runs`` is repeatable *and* comma-separated everywhere, parsed by
  :func:`parse_runs`;
- defaults shown in help texts come from the code (:func:`default_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, get_args

import typer
from typer.core import TyperCommand

#: Short option -> the one long option it stands for, in every command that has it.
SHORT_OPTIONS: dict[str, str] = {
    "-o": "--storage-option",  # like mount -o / ssh -o: options of the storage
    "-O": "--out",  # capital O: the Output file or folder
    "-r": "--runs",
    "-e": "--estimator",
    "-i": "--iterations",
    "-w": "--workers",
    "-j": "--jobs",
    "-m": "--model",
    "-b": "--batch-size",
    "-p": "--preset",
    "-c": "--config",
    "-y": "--yes",
    "-f": "--format",
}

LAKE_HELP = "Lake path or fsspec URL (s3://bucket/lake, ...)."


def lake_arg(help: str = LAKE_HELP, default: Any = ...) -> Any:
    """The ``LAKE`` positional argument."""
    return typer.Argument(default, metavar="LAKE", help=help, show_default=False)


def runs_opt(help: str = "Run ids or glob patterns (quote them: 'fcn-*'). Default: every run.") -> Any:
    """``--runs/-r RUN``: repeatable and comma-separated (see :func:`parse_runs`)."""
    return typer.Option(
        None,
        "--runs",
        "-r",
        metavar="RUN",
        help=f"{help} Repeatable or comma-separated: -r a -r b or -r a,b.",
        show_default=False,
    )


def storage_opt(
    help: str = "fsspec storage option KEY=VALUE for URL lakes (repeatable), e.g. anon=true.",
) -> Any:
    """``--storage-option/-o KEY=VALUE`` (repeatable)."""
    return typer.Option(None, "--storage-option", "-o", metavar="KEY=VALUE", help=help, show_default=False)


def parse_runs(values: Iterable[str] | str | None) -> list[str] | None:
    """Run ids/patterns from ``--runs`` given repeated and/or comma-separated.

    >>> parse_runs(["a,b", " c "])
    ['a', 'b', 'c']
    >>> parse_runs(None) is None
    True
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = [p.strip() for item in values for p in item.split(",") if p.strip()]
    return out or None


def default_text(value: Any) -> str:
    """`` Default: VALUE.`` for a help text, from the value the code uses."""
    return f" Default: {value}."


#: Help texts computed only when --help is shown (they import the analysis stage, which a plain
#: ``sgnlake ...`` start-up must not): marker -> function, see :func:`resolve_help`.
_LATER: dict[str, Callable[[], str]] = {}


def _later(fn: Callable[[], str]) -> str:
    """A marker for ``fn()`` in a help text, filled in by :func:`resolve_help` when help is shown."""
    _LATER[fn.__name__] = fn
    return f"\x00{fn.__name__}\x00"


def resolve_help(text: str | None) -> str | None:
    """``text`` with every :func:`_later` marker replaced by its function's value."""
    if not text or "\x00" not in text:
        return text
    return re.sub(r"\x00(\w+)\x00", lambda m: _LATER[m.group(1)](), text)


def _k1_help() -> str:
    from sgnlake.analyze.kernels import K1_RULES

    return (
        f"Mohammadi block size K1: {', '.join(K1_RULES)} or an integer >= 2 (as for sgnlake alpha; "
        f"stored results with the same settings are reused).{_k1_default()}"
    )


def _k1_default() -> str:
    from sgnlake.analyze.kernels import DEFAULT_K1

    return default_text(DEFAULT_K1)


def _hill_k_help() -> str:
    from sgnlake.analyze.kernels import DEFAULT_HILL_K

    return (
        "Hill estimator: number of top order statistics (an integer) or a fraction of the samples "
        f"(e.g. 0.1).{default_text(DEFAULT_HILL_K)}"
    )


def _figure_kinds() -> str:
    from sgnlake.analyze.report.kinds import kinds_help

    return kinds_help()


def k1_help() -> str:
    """Help of ``--k1``: the rules and the default of the estimator registry (filled in at --help)."""
    return _later(_k1_help)


def k1_default() -> str:
    """`` Default: RULE.`` with the registry's default K1 rule (filled in at --help)."""
    return _later(_k1_default)


def hill_k_help() -> str:
    """Help of ``--hill-k``, with the default of the estimator registry (filled in at --help)."""
    return _later(_hill_k_help)


def figure_kinds_help() -> str:
    """The report's figure kinds, for the help of ``--figures`` (filled in at --help)."""
    return _later(_figure_kinds)


# ----------------------------------------------------------------------------- Click-style help

#: Click's names of the value types (what ``--help`` shows when an option gives no metavar).
_CLICK_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "datetime": "DATETIME"}


def click_metavar(param: Any) -> str | None:
    """The Click-style metavar of a Typer parameter: its own, ``NAME`` for an argument, else
    Click's type name (``TEXT``, ``INTEGER``, ``INTEGER RANGE``, ``PATH``, ``[a|b]``).

    ``None`` for flags and where Typer still renders Click's own metavars (typer < 0.24).
    """
    if param.metavar:
        return param.metavar
    if param.param_type_name == "argument":
        return param.name.upper()
    if (
        getattr(param, "is_flag", False)
        or getattr(param, "is_bool_flag", False)
        or getattr(param, "count", False)
    ):
        return None
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    if desc.is_choice:
        return "[" + "|".join(str(c) for c in desc.choices) + "]"
    if desc.is_path:
        return "PATH"
    ann = desc.annotation
    if desc.is_list:
        args = get_args(ann)
        ann = args[0] if args else str
    name = _CLICK_NAMES.get(getattr(ann, "__name__", ""), "TEXT")
    return f"{name} RANGE" if desc.is_ranged else name


class ClickStyleCommand(TyperCommand):
    """A Typer command whose usage line and help read like Click's: ``sgnlake report [OPTIONS] LAKE``,
    ``LAKE  Lake path ...``, ``--dpi INTEGER RANGE`` (not ``{LAKE}``, ``LAKE <str>``, ``<int range>``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if p.param_type_name == "option" and p.metavar is None:
                p.metavar = click_metavar(p)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for p in self.params:
            p.help = resolve_help(getattr(p, "help", None))
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        rv = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = click_metavar(p)
                if p.nargs != 1 and not name.endswith("..."):
                    name += "..."
                rv.append(name if p.required else f"[{name}]")
            else:
                rv.extend(p.get_usage_pieces(ctx))
        return rv

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for p in self.get_params(ctx):
            rv = p.get_help_record(ctx)
            if rv is None:
                continue
            if p.param_type_name == "argument":
                args.append((click_metavar(p), rv[1]))
            else:
                opts.append(rv)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)
