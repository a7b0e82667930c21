"""`vlmbench report --format html`: one self-contained page, rendered in headless Chromium (Debian's `chromium`,
installed by .ci/run): the tables, our numbers with their intervals, the paper's and the pictures are in the
rendered DOM, the screenshot is not blank at phone and desktop width, and the page makes no network request
(Chromium's net log lists every URL request; a planted external image is caught)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmbench.records.result import load_results

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "smoke"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own background services (time sync, accounts, component updates) show up in the net log even
# for an empty page; anything else is a request the page made.
BROWSER_OWN = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)(/|:|$)")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def _runs(tmp_path: Path) -> Path:
    """The committed smoke results, one with intervals, plus an ablation plot and a captions.csv."""
    from vlmbench.reporting.plots import plot_metric_vs_key
    from vlmbench.reporting.tables import grid_table

    root = tmp_path / "runs"
    shutil.copytree(REFERENCE, root / "smoke")
    res = root / "smoke" / "msrvtt-retrieval" / "result.json"
    rec = json.loads(res.read_text())
    r1 = rec["metrics"]["R@1"]
    rec["intervals"] = {"R@1": [r1 - 1.25, r1 + 1.25]}
    res.write_text(json.dumps(rec))
    grid = grid_table([r for r in load_results(root) if r.task == "youcook2-retrieval"] * 1, ["preset"])
    grid = grid.assign(mmm=[0.5])
    plot_metric_vs_key(grid, "mmm", "R@1", root / "ablate" / "plots" / "R@1-vs-mmm.png", preset="smoke", toy=True)
    (root / "smoke" / "youcook2-caption" / "captions.csv").write_text(
        "clip_id,hypothesis,reference,cider\nyc1_0,stir the stir,stir the soup,0.0123\n"
    )
    return root


def _report(root: Path, out: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "report", str(root), "--format", "html", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return out.read_text()


def _chromium(page: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """(dumped DOM, URLs requested) for one headless load of the page."""
    log = tmp / f"net-{len(list(tmp.glob('net-*')))}.json"
    profile = tmp / "profile"
    r = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={log}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    urls = re.findall(r'"url":"([^"]*)"', log.read_text()) if log.exists() else []
    return r.stdout, [u for u in dict.fromkeys(urls) if not BROWSER_OWN.match(u)]


def test_html_is_self_contained(tmp_path):
    text = _report(_runs(tmp_path), tmp_path / "report.html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "external reference in the page"
    assert "<script" not in text and text.count("data:image/png;base64,") == 1
    assert "toy world: not comparable with published numbers" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium_without_network(tmp_path):
    page = tmp_path / "report.html"
    root = _runs(tmp_path)
    _report(root, page)
    r1 = json.loads((root / "smoke" / "msrvtt-retrieval" / "result.json").read_text())["metrics"]["R@1"]

    dom, urls = _chromium(page, tmp_path, "--dump-dom")
    assert urls == [] or all(u.startswith(("file:", "data:")) for u in urls), urls
    for task in ("msrvtt-retrieval", "youcook2-caption", "coin-segmentation", "crosstask-zeroshot"):
        assert f"<h3>{task}</h3>" in dom
    assert dom.count("<table>") >= 8
    assert f"{r1:.2f} ± 1.25" in dom  # ours, with its interval
    assert ">28.10<" in dom  # the paper's VLM MSR-VTT R@1 (Table 2)
    assert 'alt="R@1-vs-mmm"' in dom and "stir the soup" in dom

    for width in (390, 1280):  # phone and desktop
        shot = tmp_path / f"shot-{width}.png"
        _chromium(page, tmp_path, f"--screenshot={shot}", f"--window-size={width},1800")
        import matplotlib.image

        img = matplotlib.image.imread(shot)
        assert img.shape[1] == width and (img[..., :3] < 0.5).mean() > 0.005  # text drawn, not a blank page

    # planted: the same check catches a page that fetches an image from elsewhere (its CSP line removed, which
    # would otherwise block the fetch)
    leaky = tmp_path / "leaky.html"
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    leaky.write_text(text.replace("</body>", '<img src="http://example.invalid/x.png"></body>'))
    _, urls = _chromium(leaky, tmp_path, "--dump-dom")
    assert any("example.invalid" in u for u in urls)


def test_html_report_bad_input_is_exit_2(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmbench.cli",
            "report",
            str(tmp_path / "none"),
            "--format",
            "html",
            "--out",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and not (tmp_path / "r.html").exists()
