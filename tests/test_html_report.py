"""`vlmbench report --format html`: one self-contained page, rendered in headless Chromium (Debian's `chromium`,
installed by .ci/run): the tables, our numbers with their intervals, the paper's and the pictures are in the
rendered DOM, the screenshot is not blank at phone and desktop width, and the page makes no network request
(Chromium's net log lists every URL request; a planted external image is caught)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
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


@pytest.mark.slow
def test_html_is_self_contained(tmp_path):
    text = _report(_runs(tmp_path), tmp_path / "report.html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "external reference in the page"
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text), "a reference to a file beside the page"
    assert "<script" not in text and text.count('<img src="data:image/png;base64,') == text.count("<img ") > 8
    assert "toy world: not comparable with published numbers" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
@pytest.mark.slow
def test_report_renders_in_headless_chromium_without_network(tmp_path):
    page = tmp_path / "report.html"
    root = _runs(tmp_path)
    _report(root, page)
    r1 = json.loads((root / "smoke" / "msrvtt-retrieval" / "result.json").read_text())["metrics"]["R@1"]

    dom, urls = _chromium(page, tmp_path, "--dump-dom")
    assert urls == [] or all(u.startswith(("file:", "data:")) for u in urls), urls
    for task in ("msrvtt-retrieval", "youcook2-caption", "coin-segmentation", "crosstask-zeroshot"):
        assert f"<h2>{task}</h2>" in dom
    assert dom.count("<table") >= 16
    assert f'{r1:.2f}<span class="ci">[{r1 - 1.25:.2f}, {r1 + 1.25:.2f}]</span>' in dom  # ours, with its interval
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


@pytest.mark.slow
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


# ---- issue 22: pictures, toy apart, fits 1400 px; issue 23: every field escaped --------------------------------

CI_REFERENCE = REPO / "results" / "reference" / "ci"
EVIL = "<script>alert(1)</script>"


class _Page(HTMLParser):
    """Per task section (its h2): the rows of its tables in page order as (table number, tr class, first cell),
    and the alt texts of its figures."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[int, str, str]]] = {}
        self.figures: dict[str, list[str]] = {}
        self.task, self.tables, self.in_h2, self.cell, self.tr_class = "", 0, False, None, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self.in_h2, self.task = True, ""
        elif tag == "table":
            self.tables += 1
        elif tag == "tr":
            self.tr_class, self.cell = a.get("class") or "", None
        elif tag == "td" and self.cell is None:
            self.cell = ""
        elif tag == "img":
            self.figures.setdefault(self.task, []).append(a.get("alt", ""))

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
        elif tag == "td" and self.cell is not None and not isinstance(self.cell, tuple):
            self.rows.setdefault(self.task, []).append((self.tables, self.tr_class, self.cell.strip()))
            self.cell = ("done",)

    def handle_data(self, data):
        if self.in_h2:
            self.task += data
        elif isinstance(self.cell, str):
            self.cell += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.mark.slow
def test_ci_reference_report_has_its_figures_and_no_toy_row_above_a_paper_row():
    """Issue 22: in the ci report bold toy rows sat above the paper's rows (COIN 81.67 over 68.39, MSR-VTT R@1
    78.00 over 28.10) and the page had no pictures."""
    from vlmbench.reporting.html import html_report

    results = load_results(CI_REFERENCE)
    page = _parse(html_report(results, [CI_REFERENCE]))
    assert set(page.rows) == {r.task for r in results}
    for task, rows in page.rows.items():
        toy = [(n, css) for n, css, kind in rows if kind.endswith("(toy)")]
        paper = [n for n, _, kind in rows if kind == "paper"]
        assert toy and all(css == "world" for _, css in toy), (task, rows)  # labelled, never bold ("ours")
        assert len({n for n, _, kind in rows if not kind.endswith("(toy)")} & {n for n, _ in toy}) == 0
        if task != "pretrain":
            assert max(paper) < min(n for n, _ in toy), (task, rows)  # the paper's table first
            assert f"{task}: our results beside the paper" in page.figures[task]
    for task in ("msrvtt-retrieval", "youcook2-retrieval"):
        assert f"{task}: recall@k" in page.figures[task]
    for task in ("crosstask-zeroshot", "crosstask-supervised"):
        assert f"{task}: recall per task" in page.figures[task]


def _run_folder(tmp_path: Path) -> Path:
    """The ci reference's COIN and captioning results with the files a run writes beside them."""
    import numpy as np

    from vlmbench.adapters.segmentation import segmentation_classes
    from vlmbench.io import write_csv
    from vlmbench.records.formats import pack_videos

    root = tmp_path / "runs"
    for task in ("coin-segmentation", "youcook2-caption", "msrvtt-retrieval"):
        shutil.copytree(CI_REFERENCE / task, root / task)
    rng = np.random.default_rng(0)
    target = rng.integers(0, 12, 600)
    pred = np.where(rng.random(600) < 0.7, target, rng.integers(0, 12, 600))
    write_csv(
        root / "coin-segmentation" / "class_accuracy.csv", *segmentation_classes(pack_videos(["v"], [pred], [target]))
    )
    lines = ["clip_id,hypothesis,reference,cider"]
    lines += [f"yc{i},caption {i} words,reference {i} words,{i / 10:.4f}" for i in range(20)]
    (root / "youcook2-caption" / "captions.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_run_folders_add_per_class_accuracy_and_the_best_and_worst_captions(tmp_path):
    from vlmbench.reporting.html import html_report

    root = _run_folder(tmp_path)
    text = html_report(load_results(root), [root])
    page = _parse(text)
    assert "coin-segmentation: accuracy per step class" in page.figures["coin-segmentation"]
    clips = [kind for _, css, kind in page.rows["youcook2-caption"] if kind.startswith("yc")]
    assert clips == ["yc19", "yc18", "yc17", "yc16", "yc15", "yc0", "yc1", "yc2", "yc3", "yc4"]  # best, then worst
    assert "reference 19 words" in text and "<h4>best 5</h4>" in text and "<h4>worst 5</h4>" in text


@pytest.mark.slow
def test_figures_are_titled_labelled_name_the_checkpoint_and_keep_toy_off_the_papers_axis(tmp_path):
    from vlmbench.reporting import figures
    from vlmbench.reporting.tables import report_frame, sections

    root = _run_folder(tmp_path)
    results = load_results(root)
    ckpt = results[0].config["checkpoint"]
    secs = sections(report_frame(results))
    made = []
    for task in ("coin-segmentation", "msrvtt-retrieval", "youcook2-caption"):
        own = [r for r in results if r.task == task]
        fig = figures.paper_figure(task, [s for s in secs if s.task == task], own)
        papers = [ax for ax in fig.axes if "the paper's rows" in ax.get_title()]
        toys = [ax for ax in fig.axes if "toy world (own axis)" in ax.get_title()]
        assert papers and len(toys) == len(papers) == len(fig.axes) / 2, [ax.get_title() for ax in fig.axes]
        for ax in papers:  # ours (diamonds) never on the paper's axis
            assert not [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
        for ax in toys:
            assert [ln for ln in ax.get_lines() if ln.get_marker() == "D"]
        made.append(fig)
    made.append(figures.recall_figure("msrvtt-retrieval", [r for r in results if r.task == "msrvtt-retrieval"]))
    made.append(figures.class_accuracy_figure(next(r for r in results if r.task == "coin-segmentation")))
    for fig in made:
        assert fig.get_suptitle() and ckpt in fig.get_supxlabel() and "toy world" in fig.get_supxlabel()
        for ax in fig.axes:
            assert ax.get_xlabel() and (ax.get_ylabel() or ax.get_yticklabels()), ax.get_title()
    recall = made[3].axes[0]
    assert "own axis" in made[3].get_suptitle() and "recall@k (%)" == recall.get_ylabel()
    assert not [t for t in recall.get_legend().get_texts() if "paper" in t.get_text()]

    # on real data ours is comparable: drawn among the paper's rows, the paper's VLM on the recall@k axis
    real = [dataclasses.replace(r, toy=False) for r in results if r.task == "msrvtt-retrieval"]
    fig = figures.paper_figure("msrvtt-retrieval", sections(report_frame(real)), real)
    assert all("the paper's rows and ours" in ax.get_title() for ax in fig.axes)
    assert all([ln for ln in ax.get_lines() if ln.get_marker() == "D"] for ax in fig.axes)
    fig = figures.recall_figure("msrvtt-retrieval", real, {"R@1": 28.1, "R@5": 55.5, "R@10": 67.4})
    assert "paper: VLM, text→video" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_best_and_worst_captions_never_repeat_a_clip(tmp_path):
    from vlmbench.reporting.figures import best_and_worst_captions

    (tmp_path / "captions.csv").write_text("clip_id,hypothesis,reference,cider\na,x,y,0.1\nb,x,y,0.3\nc,x,y,0.2\n")
    r = dataclasses.replace(load_results(CI_REFERENCE / "youcook2-caption")[0], path=tmp_path / "result.json")
    best, worst = best_and_worst_captions(r)
    assert [x["clip_id"] for x in best] == ["b", "c"] and [x["clip_id"] for x in worst] == ["a"]


def test_untrusted_fields_are_escaped_everywhere(tmp_path):
    """Issue 23: a result.json whose preset held <script> was written into the page unescaped. The preset, a
    task name, a run name, a metric name and a caption all reach the page as text, never as markup."""
    from vlmbench.reporting.html import html_report

    root = tmp_path / "runs" / "evil"
    rec = json.loads((CI_REFERENCE / "youcook2-caption" / "result.json").read_text())
    rec.update(preset=EVIL, task=f"youcook2-caption{EVIL}")
    rec["metrics"][f"CIDEr{EVIL}"] = 1.0
    rec["config"]["name"] = f"run{EVIL}"
    root.mkdir(parents=True)
    (root / "result.json").write_text(json.dumps(rec))
    (root / "captions.csv").write_text(f"clip_id,hypothesis,reference,cider\nyc1,{EVIL},stir {EVIL},0.5\n")
    (root / "retrieval_errors.csv").write_text(f"query_id,query_text\nq1,{EVIL}\n")
    text = html_report(load_results(root), [root])
    assert "<script" not in text.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for where in (
        f"preset {escaped}",
        f"<h2>youcook2-caption{escaped}</h2>",
        f"run{escaped}",
        f">CIDEr{escaped}<",
        f"<td>{escaped}</td>",
        f"<td>stir {escaped}</td>",
    ):
        assert where in text, where


MEASURE = (
    "<script>document.body.setAttribute('data-overflow', [document.documentElement.scrollWidth - innerWidth,"
    " [...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth + 1).length].join(','))"
    "</script>"
)


def _overflow(text: str, tmp: Path, width: int, css: str = "") -> tuple[int, int]:
    """(pixels the page is wider than the window, tables that scroll sideways) in headless Chromium: the page
    with a measuring script appended (its CSP, which forbids scripts, removed)."""
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    text = text.replace("</head>", f"<style>{css}</style></head>").replace("</body>", MEASURE + "</body>")
    page = tmp / f"measure-{width}-{len(css)}.html"
    page.write_text(text)
    dom, _ = _chromium(page, tmp, "--dump-dom", f"--window-size={width},1000")
    page_px, boxes = re.search(r'data-overflow="(-?\d+),(\d+)"', dom).groups()
    return int(page_px), int(boxes)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
@pytest.mark.slow
def test_tables_fit_1400_pixels_without_scrolling_sideways(tmp_path):
    """Issue 22: the page capped its width, so wide tables (retrieval's ten metrics with intervals) scrolled
    sideways at 1400 px. Planted: the old page's rules (a 1100 px cap, cells that never wrap) are caught."""
    from vlmbench.reporting.html import html_report

    text = html_report(load_results([CI_REFERENCE, REFERENCE]), [CI_REFERENCE])
    assert _overflow(text, tmp_path, 1400) == (0, 0)
    page_px, boxes = _overflow(text, tmp_path, 1400, "body { max-width: 1100px } th, td { white-space: nowrap }")
    assert boxes > 0
