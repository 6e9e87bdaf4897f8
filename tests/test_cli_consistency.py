"""CLI consistency: ``-o`` is ``--storage-option`` everywhere; the dashboard link only when one is served."""

from __future__ import annotations

import pytest

from sgnlake.cli.app import app, main


def _command(name: str):
    import typer

    return typer.main.get_command(app).commands[name]


@pytest.mark.parametrize("name", ["collect", "ls", "copy", "alpha", "check", "report"])
def test_short_o_is_storage_option_and_clashes_with_nothing(name):
    cmd = _command(name)
    owners = {opt: p.name for p in cmd.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("-")}
    assert owners["-o"] == "storage_option" and owners["--storage-option"] == "storage_option"
    shorts = [opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts) if len(opt) == 2]
    assert len(shorts) == len(set(shorts)), shorts


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "{lake}"],
        ["collect", "{lake}", "--device", "cpu", "--no-progress"],
        ["copy", "{lake}", "{lake}-copy", "--no-progress"],
    ],
    ids=["ls", "collect", "copy"],
)
def test_short_o_reaches_the_storage_options(argv, tmp_path, capsys):
    """``-o`` without ``=`` is rejected by the storage-option parser, before anything is written."""
    lake = str(tmp_path / "lake")
    code, err = run_cli(capsys, *(a.format(lake=lake) for a in argv), "-o", "no-equals-sign")
    assert code == 2 and err.strip() == "error: bad --storage-option 'no-equals-sign': use key=value"
    assert not (tmp_path / "lake").exists() and not (tmp_path / "lake-copy").exists()


def test_ls_accepts_short_o(collected_lake, capsys):
    lake, _ = collected_lake
    with pytest.raises(SystemExit) as e:
        main(["ls", str(lake), "-o", "anon=true", "--json"])  # parsed as --storage-option ...
    err = capsys.readouterr().err
    # ... which a local lake refuses in one line (issue 12), rather than Click's "no such option"
    assert (
        e.value.code == 2 and "--storage-option is for object stores" in err and "No such option" not in err
    )


# ----------------------------------------------------------------------------- dashboard link


class _Scheduler:
    """Stands in for distributed's Scheduler: an HTTP application, with or without Bokeh mounted."""

    def __init__(self, apps: list[object]) -> None:
        self.http_application = type("RoutingApplication", (), {"applications": apps})()


class BokehTornado:  # the class distributed's dashboard is an instance of (a subclass of)
    pass


class DaskBokehTornado(BokehTornado):
    pass


class _Client:
    def __init__(self, services: dict[str, int], scheduler: _Scheduler | None) -> None:
        self._services = services
        self.cluster = type("Cluster", (), {"scheduler": scheduler})() if scheduler else None
        self.dashboard_link = "http://127.0.0.1:8787/status"

    def scheduler_info(self) -> dict:
        return {"services": self._services}

    def run_on_scheduler(self, fn):
        raise RuntimeError("pickled functions are not allowed")


def test_dashboard_link_only_when_bokeh_is_mounted():
    from sgnlake.analyze.cluster import _dashboard

    http = {"dashboard": 8787}  # what every scheduler reports, dashboard or not
    assert _dashboard(_Client(http, _Scheduler([DaskBokehTornado()]))) == "http://127.0.0.1:8787/status"
    assert _dashboard(_Client(http, _Scheduler([]))).startswith(
        "not running (scheduler started with --no-dashboard"
    )
    assert _dashboard(_Client(http, _Scheduler([object()]))).startswith("not running")  # e.g. jupyter only
    assert _dashboard(_Client({}, None)) == "not running"
    # a remote scheduler that cannot be asked: the link, with a caveat
    assert _dashboard(_Client(http, None)) == "http://127.0.0.1:8787/status (if the scheduler serves one)"


def test_no_dashboard_link_for_a_scheduler_without_dashboard():
    """A real scheduler started without a dashboard still reports services['dashboard'] (its HTTP port)."""
    pytest.importorskip("distributed")
    from sgnlake.analyze.cluster import dask_client

    lines: list[str] = []
    with dask_client(workers=1, processes=False, echo=lines.append) as client:
        assert "dashboard" in client.scheduler_info()["services"]
        served = any(
            c.__name__ == "BokehTornado"
            for a in client.cluster.scheduler.http_application.applications
            for c in type(a).__mro__
        )
    (line,) = lines
    if served:  # bokeh installed here: the dashboard runs and its link is printed
        assert line.endswith("/status")
    else:
        assert line.endswith(
            "dashboard: not running (scheduler started with --no-dashboard, or bokeh missing there)"
        )
