"""The report in a real headless browser at 1280 px: the run table fits without horizontal scrolling,
run ids stay on one line, the header is sticky, and the client-side filter hides runs.

Needs Chromium (``apt-get install -y chromium``; ``.ci/run`` installs it): skipped with a
message where it is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from lake_fixtures import RunSpec, write_lake

from sgnlake.analyze.report import build_report

WIDTH = 1280

#: Runs named like the demo's, with configs that make the run table as wide as the demo's.
RUN_IDS = (
    "lenet-b50-s0",
    "lenet-b150-s0",
    "fcn-d3-w32-b50-s0",
    "fcn-d3-w32-b100-s0",
    "fcn-d3-w32-b200-s0",
    "fcn-d3-w32-b200-lr0.05-s12345",
)

#: Runs in the page after it loaded: measures the layout and exercises the filter, then
#: writes the numbers into the DOM for --dump-dom.
PROBE = """
<script>
(function(){
  var wrap=document.querySelector('.table-wrap'), table=document.getElementById('run-table');
  var ids=[].map.call(document.querySelectorAll('#run-table tbody td:first-child a'),
                      function(a){return a.getClientRects().length;});
  var r={viewport:document.documentElement.clientWidth, table:table.getBoundingClientRect().width,
         table_right:table.getBoundingClientRect().right, wrap_scroll:wrap.scrollWidth,
         wrap_client:wrap.clientWidth, page_scroll:document.documentElement.scrollWidth,
         id_lines:ids, sticky:getComputedStyle(document.querySelector('#run-table th')).position,
         sections:document.querySelectorAll('details.run').length,
         columns:document.querySelectorAll('#run-table thead th').length};
  var box=document.getElementById('run-filter');
  box.value='b200'; box.dispatchEvent(new Event('input'));
  function shown(sel){return [].filter.call(document.querySelectorAll(sel),function(e){return e.offsetParent!==null;}).length;}
  r.rows_b200=shown('#run-table tbody tr'); r.sections_b200=shown('details.run');
  box.value='/^lenet/'; box.dispatchEvent(new Event('input'));
  r.rows_lenet=shown('#run-table tbody tr'); r.count_lenet=document.getElementById('run-count').textContent;
  var pre=document.createElement('pre'); pre.id='probe'; pre.textContent=JSON.stringify(r);
  document.body.appendChild(pre);
})();
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "Chromium is not installed, so the report cannot be checked in a browser: "
        "apt-get install -y chromium (the CI script .ci/run installs it)"
    )


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={WIDTH},900",
        "--virtual-time-budget=3000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    def tensors(i: int) -> tuple:
        return (
            ("fc1.weight", (4, 6 + i), "weight", "fc1", "Linear"),
            ("fc1.bias", (4,), "bias", "fc1", "Linear"),
        )

    # every column of the run table differs between runs (the widest table), so none is hoisted
    specs = [
        RunSpec(
            r,
            tensors=tensors(i),
            iterations=(10 * i, 100 + i, 600 + 7 * i),
            committed=3 - i % 2,
            status="complete" if i % 2 == 0 else "interrupted",
            n_minibatches=20 + 4 * i,
            batch_size=50 + 10 * i,
            seed=12345 + i,
            model=r.split("-")[0],
            depth=2 + i,
            width=8 * (i + 1),
            lr=0.1 / (i + 1),
            dead={"fc1.weight": list(range(i))},
        )
        for i, r in enumerate(RUN_IDS)
    ]
    lake = write_lake(str(tmp_path_factory.mktemp("lake") / "lake"), specs)
    out = tmp_path_factory.mktemp("report")
    return build_report(lake, out, dpi=30, figures=["alpha"], log=lambda m: None)


def test_run_table_fits_a_1280px_screen(report, tmp_path):
    browser = _chromium()
    html = report.index.read_text(encoding="utf-8")
    probe = report.index.with_name("probe.html")
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _headless(browser, "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert m, f"no probe output from {browser}: {done.stderr[-2000:]}"
    r = json.loads(m.group(1).replace("&quot;", '"'))
    assert r["columns"] >= 19, r  # all but dataset and bias differ: the widest table
    assert r["viewport"] >= WIDTH - 20, r
    assert r["table"] <= r["viewport"] and r["table_right"] <= r["viewport"], r  # the table fits the screen
    # no horizontal scrolling, neither in the table's box nor of the page
    assert r["wrap_scroll"] <= r["wrap_client"] and r["page_scroll"] <= r["viewport"], r
    assert r["id_lines"] == [1] * len(RUN_IDS), r  # run ids do not wrap
    assert r["sticky"] == "sticky" and r["sections"] == len(RUN_IDS), r
    assert r["rows_b200"] == 2 and r["sections_b200"] == 2, r  # filter by substring
    assert r["rows_lenet"] == 2 and r["count_lenet"] == "2", r  # filter by /regex/

    shot = tmp_path / "report.png"
    done = _headless(browser, f"--screenshot={shot}", report.index.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    import matplotlib.image as mpimg

    assert mpimg.imread(shot).shape[1] == WIDTH
