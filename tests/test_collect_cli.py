"""``sgnlake collect`` and ``sgnlake ls`` through the real entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
import os

import pytest
import zarr

from sgnlake.cli.app import main
from sgnlake.schema import read_run_meta

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_ARGS = [
    "--depth",
    "2",
    "--width",
    "8",
    "--n-train",
    "200",
    "--batch-size",
    "20",
    "--iterations",
    "20",
    "--every",
    "10",
    "--device",
    "cpu",
    "--no-progress",
    "--threads",
    "1",
]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def cli_ok(capsys, *argv: str) -> str:
    try:
        main(list(argv))
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "resnet50"], "unknown model 'resnet50'"),
        (["--batch-size", "201", "--n-train", "200"], "--batch-size 201 exceeds the 200 training examples"),
        (["--lr", "0"], "--lr must be a positive number"),
        (["--lr", "-0.5"], "--lr must be a positive number"),
        (["--every", "0"], "--every must be a positive number"),
        (["--model", "lenet", "--width", "3"], "no argument 'width'"),
        (["--iterations", "5", "--every", "10"], "takes no snapshot"),
        (["--at", "1,x"], "bad --at"),
        (["--keepbits", "30"], "--keepbits 30 out of range"),
        (["--dataset", "mnist"], "--download"),
        (["--run-id", "../evil"], "invalid run id"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, needle):
    lake = tmp_path / "lake"
    code, out, err = run_cli(capsys, "collect", str(lake), "--data-dir", str(tmp_path / "nodata"), *args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert needle in err
    assert not lake.exists()


def test_lake_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    code, _, err = run_cli(capsys, "collect", str(f), *TINY_ARGS)
    assert code == 2 and "is a file, not a lake" in err and err.count("\n") == 1
    assert f.read_text() == "hello" and os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_collect_ls_existing_and_resume(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    out = cli_ok(capsys, "collect", lake, *TINY_ARGS, "--stop-after", "1")
    assert "run fcn-d2-w8-n200-b20-s0: interrupted, 1/2 snapshots of 10 minibatches" in out
    code, _, err = run_cli(capsys, "collect", lake, *TINY_ARGS)
    assert code == 2 and "already exists" in err and "--resume" in err
    # resume with only the run id: the stored options are used
    out = cli_ok(capsys, "collect", lake, "--run-id", "fcn-d2-w8-n200-b20-s0", "--resume", "--no-progress")
    assert "complete, 2/2 snapshots" in out
    code, _, err = run_cli(
        capsys, "collect", lake, "--run-id", "fcn-d2-w8-n200-b20-s0", "--resume", "--batch-size", "40"
    )
    assert code == 2 and "different batch_size" in err
    cli_ok(
        capsys,
        "collect",
        lake,
        "--model",
        "lenet",
        "--n-train",
        "100",
        "--batch-size",
        "50",
        "--iterations",
        "2",
        "--at",
        "2",
        "--run-id",
        "small-lenet",
        "--no-progress",
        "--keepbits",
        "8",
        "--threads",
        "1",
    )
    rows = json.loads(cli_ok(capsys, "ls", lake, "--json"))
    assert [r["run_id"] for r in rows] == ["fcn-d2-w8-n200-b20-s0", "small-lenet"]
    fcn, lenet = rows
    assert (
        fcn["model"],
        fcn["dataset"],
        fcn["batch_size"],
        fcn["committed"],
        fcn["planned"],
        fcn["status"],
    ) == ("fcn", "mnist5k", 20, 2, 2, "complete")
    # stored size: the bytes of the run's files; ratio: float32 SGN+grad+weight bytes over them
    run_dir = tmp_path / "lake" / "runs" / "fcn-d2-w8-n200-b20-s0"
    on_disk = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert fcn["stored_bytes"] == on_disk
    assert fcn["uncompressed_bytes"] == 2 * 4 * (10 + 2) * (8 * 784 + 10 * 8)
    assert fcn["ratio"] == pytest.approx(fcn["uncompressed_bytes"] / on_disk)
    assert (
        lenet["model"] == "lenet"
        and lenet["storage"]["keepbits"] == 8
        and lenet["ratio"] > fcn["ratio"] * 0.5
    )
    table = cli_ok(capsys, "ls", lake)
    lines = table.splitlines()
    assert lines[0].split() == ["run", "model", "dataset", "batch", "snapshots", "status", "size", "ratio"]
    assert lines[1].split()[:6] == ["fcn-d2-w8-n200-b20-s0", "fcn", "mnist5k", "20", "2/2", "complete"]
    meta = read_run_meta(zarr.open_group(lake, path="runs/small-lenet", mode="r"))
    assert meta.engine == "loop" and meta.config.schedule.at == (2,)


def test_ls_of_a_non_lake_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "ls", str(tmp_path / "nothing"))
    assert code == 2 and err.startswith("error: no lake at") and err.count("\n") == 1


def test_ctrl_c_prints_how_to_resume(tmp_path, capsys, monkeypatch):
    from sgnlake.collect import runner

    def interrupted(self, t):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner._Training, "step", interrupted)
    lake = str(tmp_path / "lake")
    code, _, err = run_cli(capsys, "collect", lake, *TINY_ARGS, "--include-start", "--run-id", "c")
    assert code == 130
    assert f"sgnlake collect {lake} --run-id c --resume" in err
    meta = read_run_meta(zarr.open_group(lake, path="runs/c", mode="r"))
    assert meta.status == "interrupted" and meta.committed == 1


OLD_ID = "fcn-d2-w8-n200-b20-lr0.1-s0"  # the default id of these settings before sgnlake unified its ids


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_run_stored_under_an_old_format_id_lists_resumes_and_is_not_duplicated(tmp_path, capsys):
    from sgnlake.collect import collect
    from sgnlake.schema import RunConfig, Schedule

    lake = str(tmp_path / "lake")
    old = RunConfig(
        run_id=OLD_ID,
        model="fcn",
        model_args={"depth": 2, "width": 8},
        n_train=200,
        batch_size=20,
        iterations=20,
        schedule=Schedule(kind="every", every=10),
        device="cpu",
    )
    assert collect(lake, old, progress=False, stop_after=1, threads=1).committed == 1
    rows = json.loads(cli_ok(capsys, "ls", lake, "--json"))
    assert [r["run_id"] for r in rows] == [OLD_ID]
    # the same settings without --run-id: the stored run is that run, not a new one
    code, _, err = run_cli(capsys, "collect", lake, *TINY_ARGS)
    assert code == 2 and f"run {OLD_ID!r} already exists" in err
    out = cli_ok(capsys, "collect", lake, *TINY_ARGS, "--resume")
    assert f"run {OLD_ID}: complete, 2/2 snapshots" in out
    root = zarr.open_group(lake, mode="r")
    assert sorted(name for name, _ in root["runs"].groups()) == [OLD_ID]
    assert root[f"runs/{OLD_ID}"].attrs["sgnlake_run"]["committed"] == 2
    # the stored id keeps working as before
    out = cli_ok(capsys, "collect", lake, "--run-id", OLD_ID, "--resume", "--no-progress")
    assert f"run {OLD_ID}: complete" in out
