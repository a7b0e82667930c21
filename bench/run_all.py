"""`make bench`: every benchmark in bench/, one after another (each prints its own table), then one summary of the
figures that have a goal (the ratios of issue 24), each beside its goal: what the scripts wrote with
figures.write() into a fresh folder for this run."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import figures as fig  # noqa: E402

with tempfile.TemporaryDirectory(prefix="vlmbench-bench-") as folder:
    env = {**os.environ, fig.ENV_DIR: folder}
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n=== {script.name} ===", flush=True)
        if subprocess.run([sys.executable, str(script)], env=env).returncode != 0:
            failed.append(script.name)
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        for f in doc["figures"]:
            verdict = {True: "met", False: "NOT met", None: "-"}[fig.met(f)]
            sign = ">=" if f["better"] == "higher" else "<="
            goal = "-" if f.get("goal") is None else f"{sign} {f['goal']:.3g}{f['unit']}"
            rows.append((f["label"], f"{f['measured']:.2f}{f['unit']}", goal, verdict))

print("\n=== summary: each figure beside its goal (medians of repeats, measured in one process) ===")
width = max([len(r[0]) for r in rows] + [6])
print(f"{'figure':{width}}  {'measured':>10}  {'goal':>10}  verdict")
for label, measured, goal, verdict in rows:
    print(f"{label:{width}}  {measured:>10}  {goal:>10}  {verdict}")
if failed:
    print(f"failed: {', '.join(failed)}")
    sys.exit(1)
