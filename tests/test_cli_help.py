"""Every command's --help: Click-style metavars, help text on every option, one meaning per short
option, defaults that are the code's; --runs parsed one way everywhere; a plottable default schedule."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from sgnlake.cli.app import app
from sgnlake.cli.options import SHORT_OPTIONS, parse_runs

#: A Click-style metavar: upper-case words, digits and the separators KEY=VALUE, RULE|INTEGER,
#: TENSOR:INDEX use; Click adds "..." for repeatable arguments.
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*([=|:.\- ][A-Z0-9_]+)*(\.\.\.)?$")


def _group():
    return typer.main.get_command(app)


def _commands():
    group = _group()
    return sorted(group.commands.items())


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_help_has_clickstyle_metavars_and_help_on_every_option(name):
    """Read the rendered --help: usage ``sgnlake NAME [OPTIONS] ARG``, each value option followed by
    an upper-case metavar, every option with help text, no ``{lake}``/``<str>``/``<list[str]>``."""
    cmd = _group().commands[name]
    out = CliRunner().invoke(app, [name, "--help"], terminal_width=100).output
    typer_style = re.search(
        r"<(str|int|float|bool|path|file|list\[|tuple|datetime)[^>]*>|\{[A-Za-z_]+\}", out
    )
    assert not typer_style, typer_style
    usage = out.splitlines()[0]
    assert usage.startswith(f"Usage: sgnlake {name} [OPTIONS]"), usage
    options = out[out.index("\nOptions:") :]
    for p in cmd.params:
        if p.param_type_name == "argument":
            meta = p.metavar or p.name.upper()
            assert re.search(rf" \[?{re.escape(meta)}(\.\.\.)?\]?( |$)", usage), (usage, meta)
            assert METAVAR.match(meta), meta
            continue
        if p.name == "help":
            continue
        assert (p.help or "").strip(), f"sgnlake {name} {p.opts}: option without help text"
        longest = max(p.opts, key=len)
        flag = getattr(p, "is_flag", False) or getattr(p, "is_bool_flag", False) or p.secondary_opts
        m = re.search(rf"^  (?:-\w, )*{re.escape(longest)}(?: / --[\w-]+)? ?(\S*(?: RANGE)?)", options, re.M)
        assert m, (name, longest)
        shown = m.group(1)
        if flag:
            assert shown == "" or shown.startswith("/"), (name, longest, shown)
        else:
            assert METAVAR.match(shown), f"sgnlake {name} {longest}: metavar {shown!r} is not Click-style"


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_short_options_mean_the_same_everywhere(name):
    cmd = _group().commands[name]
    for p in cmd.params:
        shorts = [o for o in (*p.opts, *p.secondary_opts) if re.fullmatch(r"-[A-Za-z]", o)]
        longs = [o for o in p.opts if o.startswith("--")]
        for s in shorts:
            assert s in SHORT_OPTIONS, f"sgnlake {name}: short option {s} is not in cli.options.SHORT_OPTIONS"
            assert SHORT_OPTIONS[s] in longs, f"sgnlake {name}: {s} is {longs}, elsewhere {SHORT_OPTIONS[s]}"


def test_runs_option_is_the_same_everywhere():
    """Every --runs is the shared declaration: -r, metavar RUN, repeatable, comma-separated in its help."""
    seen = 0
    for name, cmd in _commands():
        for p in cmd.params:
            if "--runs" in p.opts:
                seen += 1
                assert "-r" in p.opts and p.metavar == "RUN" and p.multiple, name
                assert "comma-separated" in p.help, name
    assert seen >= 3  # alpha, report, copy
    assert parse_runs(["a,b", " c ", "d,,"]) == ["a", "b", "c", "d"]
    assert parse_runs("x") == ["x"] and parse_runs(None) is None and parse_runs([" , "]) is None


def test_help_states_the_code_defaults():
    from sgnlake.analyze.kernels import DEFAULT_HILL_K, DEFAULT_K1

    for cmd in ("report", "alpha"):
        out = CliRunner().invoke(app, [cmd, "--help"], terminal_width=200).output
        flat = " ".join(out.split())
        k1_help = flat[flat.index("--k1") : flat.index("--hill-k")]
        assert f"Default: {DEFAULT_K1}." in k1_help, k1_help
        assert f"Default: {DEFAULT_HILL_K}." in flat
        assert "sqrt (the default)" not in flat


def test_plain_collect_schedule_is_plottable():
    """No --every/--at/--logspace: several snapshots over one epoch of the embedded data."""
    from sgnlake.cli.collect_cmd import DEFAULT_SNAPSHOTS, _schedule
    from sgnlake.schema.defaults import field_default

    steps = 5000 // field_default("batch_size")  # one epoch of mnist5k at the default batch size
    its = _schedule(None, None, None, False, False).iterations(steps)
    assert len(its) >= min(DEFAULT_SNAPSHOTS, steps) - 1 >= 5 and its[-1] == steps
    assert _schedule(25, None, None, False, False).iterations(100) == [25, 50, 75, 100]


def test_demo_prints_where_its_time_went():
    from sgnlake.cli.demo_cmd import format_timings

    assert format_timings(30.4, 5.2, 13.1) == "done in 49 s (collect 30 s, alpha 5 s, report 13 s)"


def test_cli_start_imports_no_analysis_stack():
    """Help texts that name the code's defaults are filled in at --help, so starting ``sgnlake``
    imports neither xarray, dask, scipy nor torch."""
    import subprocess
    import sys

    code = (
        "import sys, sgnlake.cli.app; "
        "print(sorted(m for m in ('xarray', 'dask', 'scipy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
