"""Bad input for every command: one clear line on stderr, exit code 2, no traceback, nothing written.

The matrix :data:`CASES` is the source of ``docs/bad-input.md``: run
``python tests/test_bad_input.py`` to print the table with the messages users
actually get. Commands run in-process through the ``sgnlake`` entry point
(:func:`sgnlake.cli.app.main`), which is what the console script calls.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zarr

sys.path.insert(0, os.path.dirname(__file__))
from faulty_store import FaultState, patch_open_store  # noqa: E402
from lake_fixtures import RunSpec, write_lake  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` uses ``{LAKE}``-style placeholders for the prepared paths."""

    id: str
    argv: tuple[str, ...]
    expect: str  # a fragment of the one-line message
    what: str  # the bad input, in words (for the docs table)
    code: int = 2
    readonly: bool = False  # run against a lake whose every write fails with EACCES
    writes: bool = False  # a valid (exit 0) case that may write, e.g. an empty destination lake
    bug: str = ""  # a known bug in another module: the case is an expected (strict) failure


C = Case
#: Every bad input tried. Paths: LAKE (a lake with run r1), NEWER (schema version 99), EMPTY
#: (a lake without runs), NOTLAKE (a non-empty folder), FILE (a file), MISSING (nothing there),
#: OUT (a folder that must not be created), TOML (an invalid grid file).
CASES: tuple[Case, ...] = (
    # ------------------------------------------------------------------ collect
    C("collect-batch-0", ("collect", "{MISSING}", "--batch-size", "0"), "--batch-size", "batch size 0"),
    C("collect-lr-negative", ("collect", "{MISSING}", "--lr", "-1"), "--lr", "negative learning rate"),
    C("collect-lr-nan", ("collect", "{MISSING}", "--lr", "nan"), "--lr", "learning rate NaN"),
    C("collect-lr-text", ("collect", "{MISSING}", "--lr", "fast"), "--lr", "learning rate not a number"),
    C("collect-every-0", ("collect", "{MISSING}", "--every", "0"), "--every", "snapshot every 0 steps"),
    C("collect-at-text", ("collect", "{MISSING}", "--at", "1,x"), "--at", "--at with a non-integer"),
    C("collect-two-schedules", ("collect", "{MISSING}", "--every", "5", "--at", "1"), "give only one", "--every and --at together"),
    C("collect-model", ("collect", "{MISSING}", "--model", "resnet999"), "unknown model", "unknown model"),
    C("collect-depth", ("collect", "{MISSING}", "--depth", "1"), "depth", "FCN depth 1"),
    C("collect-model-arg", ("collect", "{MISSING}", "--model-arg", "width"), "--model-arg", "--model-arg without '='"),
    C("collect-model-arg-unknown", ("collect", "{MISSING}", "--model-arg", "heads=4"), "heads", "unknown model argument"),
    C("collect-dataset", ("collect", "{MISSING}", "--dataset", "imagenet"), "imagenet", "unknown dataset"),
    C("collect-dataset-missing", ("collect", "{MISSING}", "--dataset", "cifar10", "--data-dir", "{OUT}"), "cifar10", "dataset files absent"),
    C("collect-n-train-0", ("collect", "{MISSING}", "--n-train", "0"), "--n-train", "--n-train 0"),
    C("collect-batch-gt-n", ("collect", "{MISSING}", "--n-train", "10", "--batch-size", "50"), "50", "batch larger than the data"),
    C("collect-keepbits", ("collect", "{MISSING}", "--keepbits", "99"), "--keepbits", "--keepbits 99"),
    C("collect-dtype", ("collect", "{MISSING}", "--dtype", "int8"), "dtype", "unknown storage dtype"),
    C("collect-codec", ("collect", "{MISSING}", "--codec", "lzma"), "codec", "unknown codec"),
    C("collect-engine", ("collect", "{MISSING}", "--engine", "magic"), "engine", "unknown engine"),
    C("collect-device", ("collect", "{MISSING}", "--device", "tpu"), "tpu", "unknown device"),
    C("collect-tensors", ("collect", "{MISSING}", "--tensors", "fc9.weight"), "fc9.weight", "unknown tensor"),
    C("collect-run-id-slash", ("collect", "{MISSING}", "--run-id", "a/b"), "invalid run id", "run id with '/'"),
    C("collect-run-id-dotdot", ("collect", "{MISSING}", "--run-id", ".."), "invalid run id", "run id '..'"),
    C("collect-run-id-space", ("collect", "{MISSING}", "--run-id", "my run"), "invalid run id", "run id with a space"),
    C("collect-run-exists", ("collect", "{LAKE}", "--run-id", "r1"), "already exists", "existing run without --resume"),
    C("collect-resume-other-config", ("collect", "{LAKE}", "--run-id", "r1", "--resume", "--lr", "0.5"), "different lr", "--resume with a different setting"),
    C("collect-newer-schema", ("collect", "{NEWER}", "--run-id", "x"), "newer", "lake of a newer schema version"),
    C("collect-not-a-lake", ("collect", "{NOTLAKE}", "--run-id", "x"), "not an sgnlake lake", "non-empty folder that is not a lake"),
    C("collect-file", ("collect", "{FILE}", "--run-id", "x"), "is a file", "a file as the lake"),
    C("collect-url-scheme", ("collect", "nosuch://bucket/lake", "--run-id", "x"), "Protocol not known", "URL with an unknown scheme"),
    C("collect-storage-option", ("collect", "{MISSING}", "--storage-option", "anon"), "key=value", "--storage-option without '='"),
    C("collect-threads-0", ("collect", "{MISSING}", "--threads", "0"), "--threads", "--threads 0"),
    C("collect-stop-after-0", ("collect", "{MISSING}", "--stop-after", "0"), "stop", "--stop-after 0"),
    C("collect-unknown-flag", ("collect", "{MISSING}", "--bogus"), "No such option", "unknown option"),
    C("collect-no-lake", ("collect",), "Missing argument", "no LAKE argument"),
    C("collect-run-id-newline", ("collect", "{MISSING}", "--run-id", "ab\n"), "invalid run id", "run id with a trailing newline"),
    C("collect-run-id-tab", ("collect", "{MISSING}", "--run-id", "a\tb"), "invalid run id", "run id with a control character"),
    C("collect-run-id-zarr-json", ("collect", "{MISSING}", "--run-id", "zarr.json"), "reserved", "run id 'zarr.json'"),
    C("collect-run-id-dot", ("collect", "{MISSING}", "--run-id", "."), "invalid run id", "run id '.'"),
    C("collect-run-id-hidden", ("collect", "{MISSING}", "--run-id", ".hidden"), "invalid run id", "run id starting with '.'"),
    C("collect-level-high", ("collect", "{MISSING}", "--level", "99"), "-131072..22", "zstd --level 99"),
    C("collect-level-blosc", ("collect", "{MISSING}", "--codec", "blosc-zstd", "--level", "12"), "0..9", "blosc --level 12"),
    C("collect-seed-negative", ("collect", "{MISSING}", "--seed", "-1"), "--seed -1 out of range", "negative --seed"),
    C("collect-seed-huge", ("collect", "{MISSING}", "--seed", "99999999999999999999999"), "out of range", "--seed beyond 2**63-1"),
    C("collect-at-beyond", ("collect", "{MISSING}", "--iterations", "20", "--at", "5,500"), "last step 20", "--at beyond the last step"),
    C("collect-storage-option-local", ("collect", "{MISSING}", "--storage-option", "anon=true"), "local path", "--storage-option for a local lake"),
    C("collect-storage-option-empty-key", ("collect", "s3://b/lake", "--storage-option", "=x"), "empty key", "--storage-option with an empty key"),
    C("collect-storage-option-empty-part", ("collect", "s3://b/lake", "--storage-option", "client_kwargs.=x"), "empty key", "--storage-option 'a.=x'"),
    C("collect-storage-option-nested-conflict", ("collect", "s3://b/lake", "--storage-option", "client_kwargs=1", "--storage-option", "client_kwargs.endpoint_url=x"), "cannot also hold nested keys", "--storage-option value and nested keys for one name"),
    C("collect-s3-unreachable", ("collect", "s3://b/lake", "--run-id", "x", "--storage-option", "client_kwargs.endpoint_url=http://127.0.0.1:9", "--storage-option", "key=k", "--storage-option", "secret=s"), "cannot connect", "S3 endpoint that does not answer"),
    C("ls-s3-unknown-option", ("ls", "s3://b/lake", "--storage-option", "bogus_option=1", "--storage-option", "client_kwargs.endpoint_url=http://127.0.0.1:9"), "unknown storage option", "unknown S3 option"),
    # ------------------------------------------------------------------ ls
    C("ls-missing", ("ls", "{MISSING}"), "no lake at", "path with nothing there"),
    C("ls-not-a-lake", ("ls", "{NOTLAKE}"), "not an sgnlake lake", "folder that is not a lake"),
    C("ls-file", ("ls", "{FILE}"), "is a file", "a file as the lake"),
    C("ls-newer-schema", ("ls", "{NEWER}"), "newer", "lake of a newer schema version"),
    C("ls-file-url", ("ls", "file://{MISSING}"), "no lake at", "file:// URL with nothing there"),
    C("ls-empty", ("ls", "{EMPTY}"), "no runs", "empty lake (not an error)", code=0),
    # ------------------------------------------------------------------ alpha
    C("alpha-missing", ("alpha", "{MISSING}"), "no lake at", "path with nothing there"),
    C("alpha-newer-schema", ("alpha", "{NEWER}"), "newer", "lake of a newer schema version"),
    C("alpha-not-a-lake", ("alpha", "{NOTLAKE}"), "not an sgnlake lake", "folder that is not a lake"),
    C("alpha-readonly", ("alpha", "{LAKE}", "--no-progress"), "read-only", "read-only lake (writes fail with EACCES)", readonly=True),
    C("alpha-run", ("alpha", "{LAKE}", "--runs", "nope"), "nope", "run id not in the lake"),
    C("alpha-run-glob", ("alpha", "{LAKE}", "--runs", "zz*"), "zz*", "glob matching no run"),
    C("alpha-run-id-bad", ("alpha", "{LAKE}", "--runs", "a/b"), "a/b", "run id with '/'"),
    C("alpha-empty", ("alpha", "{EMPTY}"), "no runs", "empty lake"),
    C("alpha-estimator", ("alpha", "{LAKE}", "--estimator", "magic"), "unknown estimator", "unknown estimator"),
    C("alpha-k1-1", ("alpha", "{LAKE}", "--k1", "1"), "k1", "--k1 1"),
    C("alpha-k1-text", ("alpha", "{LAKE}", "--k1", "big"), "big", "--k1 unknown rule"),
    C("alpha-k1-hill", ("alpha", "{LAKE}", "--estimator", "hill", "--k1", "5"), "--k1", "--k1 with the hill estimator"),
    C("alpha-hill-k", ("alpha", "{LAKE}", "--estimator", "hill", "--hill-k", "many"), "--hill-k", "--hill-k not a number"),
    C("alpha-k1-m", ("alpha", "{LAKE}", "--k1", "20"), "2..10", "--k1 equal to M (K2 = 1)"),
    C("alpha-k1-k2-1", ("alpha", "{LAKE}", "--k1", "11"), "2..10", "--k1 above M/2 (K2 = 1)"),
    C("alpha-hill-k-m", ("alpha", "{LAKE}", "--estimator", "hill", "--hill-k", "20"), "1..19", "--hill-k >= M"),
    C("alpha-workers", ("alpha", "{LAKE}", "--workers", "-1"), "--workers", "--workers -1"),
    C("alpha-scheduler", ("alpha", "{LAKE}", "--scheduler", "tcp://127.0.0.1:9", "--timeout", "0.5"), "127.0.0.1:9", "unreachable Dask scheduler"),
    # ------------------------------------------------------------------ report
    C("report-missing", ("report", "{MISSING}", "--out", "{OUT}"), "no lake at", "path with nothing there"),
    C("report-newer-schema", ("report", "{NEWER}", "--out", "{OUT}"), "newer", "lake of a newer schema version"),
    C("report-empty", ("report", "{EMPTY}", "--out", "{OUT}"), "no runs", "empty lake"),
    C("report-no-out", ("report", "{LAKE}"), "--out", "no --out"),
    C("report-run", ("report", "{LAKE}", "--out", "{OUT}", "--runs", "nope"), "nope", "run id not in the lake"),
    C("report-iterations-text", ("report", "{LAKE}", "--out", "{OUT}", "--iterations", "soon"), "soon", "iteration selection not a number"),
    C("report-param-tensor", ("report", "{LAKE}", "--out", "{OUT}", "--param", "fc9.weight:0"), "fc9.weight", "--param of an unknown tensor"),
    C("report-param-range", ("report", "{LAKE}", "--out", "{OUT}", "--param", "fc1.bias:999"), "999", "--param index out of range"),
    C("report-param-format", ("report", "{LAKE}", "--out", "{OUT}", "--param", "fc1.bias"), "TENSOR:INDEX", "--param without an index"),
    C("report-estimator", ("report", "{LAKE}", "--out", "{OUT}", "--estimator", "magic"), "magic", "unknown estimator"),
    C("report-dpi", ("report", "{LAKE}", "--out", "{OUT}", "--dpi", "5"), "--dpi", "--dpi 5"),
    C("report-out-file", ("report", "{LAKE}", "--out", "{FILE}"), "is a file", "--out is a file"),
    C("report-figures", ("report", "{LAKE}", "--out", "{OUT}", "--figures", "nope"), "no figure kind", "--figures of no figure kind"),
    C("report-out-lake", ("report", "{LAKE}", "--out", "{LAKE}"), "inside the lake", "--out equal to the lake"),
    C("report-out-in-lake", ("report", "{LAKE}", "--out", "{LAKE}/report"), "inside the lake", "--out inside the lake"),
    C("report-iterations-huge", ("report", "{LAKE}", "--out", "{OUT}", "--iterations", "9" * 30), "out of range", "--iterations with a huge integer"),
    # ------------------------------------------------------------------ check
    C("check-missing", ("check", "{MISSING}"), "no lake at", "path with nothing there"),
    C("check-newer-schema", ("check", "{NEWER}"), "newer", "lake of a newer schema version"),
    C("check-not-a-lake", ("check", "{NOTLAKE}"), "not an sgnlake lake", "folder that is not a lake"),
    C("check-file", ("check", "{FILE}"), "is a file", "a file as the lake"),
    C("check-url-scheme", ("check", "nosuch://bucket/lake"), "Protocol not known", "URL with an unknown scheme"),
    C("check-url-backend", ("check", "gs://bucket/lake"), "gcsfs", "URL whose fsspec backend is not installed"),
    C("check-workers", ("check", "{LAKE}", "--workers", "0"), "--workers", "--workers 0"),
    C("check-storage-option", ("check", "{LAKE}", "--storage-option", "anon"), "key=value", "--storage-option without '='"),
    C("check-empty", ("check", "{EMPTY}", "--no-progress"), "OK", "empty lake (not an error: prints the report)", code=0),
    # ------------------------------------------------------------------ sweep
    C("sweep-preset", ("sweep", "{MISSING}", "--preset", "nope"), "nope", "unknown preset"),
    C("sweep-config-missing", ("sweep", "{MISSING}", "--config", "{OUT}/grid.toml"), "grid.toml", "grid file that does not exist"),
    C("sweep-config-bad-toml", ("sweep", "{MISSING}", "--config", "{TOML}"), "TOML", "grid file that is not TOML"),
    C("sweep-no-grid", ("sweep", "{MISSING}"), "--preset", "neither --preset nor --config"),
    C("sweep-jobs-0", ("sweep", "{MISSING}", "--preset", "paper-fcn-small", "--jobs", "0"), "--jobs", "--jobs 0"),
    C("sweep-set", ("sweep", "{MISSING}", "--preset", "paper-fcn-small", "--set", "lr"), "--set", "--set without '='"),
    C("sweep-set-field", ("sweep", "{MISSING}", "--preset", "paper-fcn-small", "--set", "colour=red"), "colour", "--set of an unknown field"),
    C("sweep-set-value", ("sweep", "{MISSING}", "--preset", "paper-fcn-small", "--set", "lr=-1"), "lr", "--set lr=-1"),
    C("sweep-newer-schema", ("sweep", "{NEWER}", "--preset", "paper-fcn-small"), "newer", "lake of a newer schema version"),
    C("sweep-not-a-lake", ("sweep", "{NOTLAKE}", "--preset", "paper-fcn-small"), "not an sgnlake lake", "folder that is not a lake"),
    C("sweep-only", ("sweep", "{MISSING}", "--preset", "paper-fcn-small", "--only", "zz*"), "zz*", "--only matching no run"),
    # ------------------------------------------------------------------ copy
    C("copy-src-missing", ("copy", "{MISSING}", "{OUT}"), "no lake at", "source with nothing there"),
    C("copy-src-newer", ("copy", "{NEWER}", "{OUT}"), "newer", "source of a newer schema version"),
    C("copy-dst-newer", ("copy", "{LAKE}", "{NEWER}"), "newer", "destination of a newer schema version"),
    C("copy-dst-file", ("copy", "{LAKE}", "{FILE}"), "is a file, not a lake", "destination is a file"),
    C("copy-dst-not-a-lake", ("copy", "{LAKE}", "{NOTLAKE}"), "not a lake", "destination is a non-empty non-lake folder"),
    C("copy-run", ("copy", "{LAKE}", "{OUT}", "--runs", "nope"), "nope", "run id not in the source"),
    C("copy-same", ("copy", "{LAKE}", "{LAKE}"), "same", "source and destination are the same lake"),
    C("copy-jobs-0", ("copy", "{LAKE}", "{OUT}", "--jobs", "0"), "--jobs", "--jobs 0"),
    C("copy-empty", ("copy", "{EMPTY}", "{OUT}"), "copied 0 run(s)", "empty source lake (not an error: DST is created)", code=0, writes=True),
    # ------------------------------------------------------------------ rm, export
    C("rm-missing", ("rm", "{MISSING}", "r1", "--yes"), "no lake at", "path with nothing there"),
    C("rm-run", ("rm", "{LAKE}", "nope", "--yes"), "no run 'nope'", "run id not in the lake"),
    C("rm-bad-run-id", ("rm", "{LAKE}", "../x", "--yes"), "invalid run id", "run id that cannot name a run"),
    C("rm-no-yes", ("rm", "{LAKE}", "r1"), "--yes", "no --yes and stdin is not a terminal"),
    C("rm-newer", ("rm", "{NEWER}", "r1", "--yes"), "newer", "lake of a newer schema version"),
    C("export-suffix", ("export", "{LAKE}", "{OUT}"), "cannot tell the export format", "output without .csv/.parquet/.nc/.zarr"),
    C("export-missing", ("export", "{MISSING}", "{OUT}.csv"), "no lake at", "path with nothing there"),
    C("export-run", ("export", "{LAKE}", "{OUT}.nc", "--runs", "nope"), "nope", "run id not in the lake"),
)  # fmt: skip


def make_paths(base: Path) -> dict[str, str]:
    """Create the inputs the cases refer to, under ``base``."""
    lake = base / "lake"
    write_lake(str(lake), [RunSpec("r1", iterations=(0, 100), n_minibatches=20)])
    newer = base / "newer"
    shutil.copytree(lake, newer)
    doc = json.loads((newer / "zarr.json").read_text())
    doc["attributes"]["sgnlake"]["version"] = 99
    (newer / "zarr.json").write_text(json.dumps(doc))
    empty = base / "empty"
    zarr.open_group(
        str(empty), mode="w", zarr_format=3, attributes={"sgnlake": {"schema": "sgnlake.lake", "version": 1}}
    )
    zarr.open_group(str(empty), mode="r+").create_group("runs")
    notlake = base / "notlake"
    notlake.mkdir()
    (notlake / "notes.txt").write_text("not a lake\n")
    file = base / "file.txt"
    file.write_text("a file\n")
    toml = base / "grid.toml"
    toml.write_text("[base\nmodel = fcn\n")
    return _names(base)


def _names(base: Path) -> dict[str, str]:
    return {
        "LAKE": str(base / "lake"),
        "NEWER": str(base / "newer"),
        "EMPTY": str(base / "empty"),
        "NOTLAKE": str(base / "notlake"),
        "FILE": str(base / "file.txt"),
        "MISSING": str(base / "missing"),
        "OUT": str(base / "out"),
        "TOML": str(base / "grid.toml"),
    }


def tree(base: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``base`` with size and mtime (to prove nothing was written)."""
    out = {}
    for root, dirs, files in os.walk(base):
        for f in files + dirs:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, base)] = (st.st_size if f in files else -1, st.st_mtime_ns)
    return out


def run_case(case: Case, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run one case in-process through the ``sgnlake`` entry point; return (exit code, stdout, stderr)."""
    from sgnlake.cli.app import main

    argv = [a.format(**paths) for a in case.argv]
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with monkeypatch.context() as mp:
        if case.readonly:
            state = FaultState(
                fail_after=0, error=lambda key: PermissionError(errno.EACCES, "Permission denied", key)
            )
            patch_open_store(mp, state)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as e:
                code = e.code
            except Exception as e:  # what the console script would show as a traceback
                code = 1
                err.write(
                    f"Traceback (uncaught {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})\n"
                )
    code = code if isinstance(code, int) else (0 if code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bad") / "inputs"
    make_paths(base)
    return base


@pytest.fixture
def paths(template: Path, tmp_path: Path) -> dict[str, str]:
    """The shared inputs, with MISSING and OUT fresh for each case."""
    out = _names(template)
    out["MISSING"], out["OUT"] = str(tmp_path / "missing"), str(tmp_path / "out")
    return out


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.bug)) if c.bug else c for c in CASES],
    ids=[c.id for c in CASES],
)
def test_bad_input(case: Case, paths: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    if case.writes or case.bug:  # may write: run on a private copy of the inputs
        base = Path(paths["OUT"]).parent / "inputs"
        shutil.copytree(Path(paths["LAKE"]).parent, base, symlinks=True)
        paths = {**paths, **{k: v for k, v in _names(base).items() if k not in ("MISSING", "OUT")}}
    base = Path(paths["LAKE"]).parent
    before = tree(base)
    code, out, err = run_case(case, paths, monkeypatch)
    assert "Traceback" not in err and "Traceback" not in out
    assert code == case.code, (code, out, err)
    if case.code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert case.expect in err, err
    else:
        assert case.expect in out, out
    if not case.writes:
        assert tree(base) == before, "something was written"
        assert not os.path.exists(paths["MISSING"]) and not os.path.exists(paths["OUT"])


# ----------------------------------------------------------------------------- the docs table

Row = tuple[str, str, str, int, str]


def table(rows: list[Row]) -> str:
    """The markdown table of ``docs/bad-input.md``."""
    lines = ["| command | bad input | what the user gets (stderr) | exit |", "|---|---|---|---|"]
    for cmd, what, argv, code, msg in rows:
        shown = msg.replace("|", "\\|")
        lines.append(f"| `{cmd}` | {what} (`{argv}`) | {shown} | {code} |")
    return "\n".join(lines)


def collect_rows(base: Path, runner: Callable[[Case], tuple[int, str, str]]) -> list[Row]:
    rows = []
    for case in CASES:
        code, out, err = runner(case)
        msg = (err or out).strip().splitlines()
        text = msg[0] if code == 2 or len(msg) == 1 else (msg[-1] if msg else "")
        if case.bug:
            text = f"**known bug** ({case.bug}); now: {text or 'exit 0'}"
        argv = " ".join(
            (a if a.isprintable() else repr(a)).replace("{", "").replace("}", "") for a in case.argv
        )
        rows.append((case.argv[0] if case.argv else "", case.what, argv, code, text))
    return rows


if __name__ == "__main__":  # print the docs table: python tests/test_bad_input.py
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        template = Path(d) / "template"
        make_paths(template)

        def runner(case: Case) -> tuple[int, str, str]:
            base = Path(d) / case.id
            shutil.copytree(template, base, symlinks=True)
            mp = pytest.MonkeyPatch()
            try:
                return run_case(case, _names(base), mp)
            finally:
                mp.undo()

        print(table(collect_rows(Path(d), runner)).replace(d + "/", "/tmp/"))
