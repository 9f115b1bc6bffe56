"""Every `make bench` row, A/B in turns: another checkout (A, with its own .venv) against this one
(B). Each round runs every bench_*.py once in A, then once in B (or B first on odd rounds), so a
noisy minute of the machine hits both; then each row's figures from all rounds are compared.

    .venv/bin/python bench/ab.py --base ../cb-base --rounds 3

Noise is measured, not assumed: a row's spread is (max - min) / median over the rounds, in each
tree. A row is "slower" only when B's median is worse than A's by more than the larger of the two
spreads; otherwise its difference is within the noise of this machine and run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NUM = re.compile(r"^[-+]?[\d,]*\.?\d+")
LOWER_BETTER = ("us", "ms", "ns", " s", "mib")


def run(tree: Path, script: str) -> str:
    py = tree / ".venv" / "bin" / "python"
    proc = subprocess.run([str(py), str(tree / "bench" / script)], cwd=tree, capture_output=True,
                          text=True)
    if proc.returncode:
        print(f"{tree.name}/{script} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return proc.stdout


def rows(output: str) -> dict[str, tuple[float, bool]]:
    """(table title / row label) -> (the row's first figure, whether lower is better)."""
    out: dict[str, tuple[float, bool]] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not re.fullmatch(r"[- ]+", line) or "-" not in line or i < 1:
            continue
        title, header = (lines[i - 2].strip() if i >= 2 else ""), lines[i - 1]
        cols = [m.span() for m in re.finditer(r"-+", line)]
        for row in lines[i + 1:]:
            if not row.strip() or re.fullmatch(r"[- ]+", row):
                break
            if any(row[b:b + 2].strip() for a, b in cols[:-1]):
                break  # prose under the table, not a row: text runs across the column gaps
            cells = [row[a:b if k + 1 < len(cols) else None].strip()
                     for k, (a, b) in enumerate(cols)]
            label = cells[0] if not NUM.match(cells[0]) else header[:cols[0][1]].strip()
            figures = []
            for k in range(1 if label == cells[0] else 0, len(cells)):
                cell = cells[k]
                m = NUM.match(cell)
                if m:
                    unit = (cell[m.end():] + " " + header[cols[k][0]:cols[k][1]]).lower()
                    has_unit = any(u in unit for u in (*LOWER_BETTER, "/s"))
                    lower = any(u in unit for u in LOWER_BETTER) and "/s" not in unit
                    figures.append((not has_unit, float(m.group().replace(",", "")), lower))
            if figures:  # the first figure with a unit, else the first figure
                _, value, lower = min(figures, key=lambda f: f[0])
                # a label's own figures ("after 10.3M records") vary from run to run
                label = re.sub(r"\d+\.\d+", "#", label)
                out[f"{title[:40]} / {label}"] = (value, lower)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="checkout A (with its .venv built)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="bench scripts to run (default: all)")
    args = ap.parse_args()
    scripts = args.only or sorted(p.name for p in HERE.glob("bench_*.py"))
    figures: dict[str, dict[str, list[float]]] = {"A": defaultdict(list), "B": defaultdict(list)}
    lower: dict[str, bool] = {}
    trees = {"A": args.base.resolve(), "B": ROOT}
    for r in range(args.rounds):
        for script in scripts:
            for side in ("AB" if r % 2 == 0 else "BA"):
                print(f"round {r + 1}: {side} {script}", file=sys.stderr, flush=True)
                for label, (value, low) in rows(run(trees[side], script)).items():
                    figures[side][f"{script[6:-3]}: {label}"].append(value)
                    lower[f"{script[6:-3]}: {label}"] = low
    print(f"A = {trees['A']}, B = {trees['B']}, {args.rounds} rounds in turns; "
          "spread = (max - min) / median over the rounds")
    print(f"{'row':<92} {'A median':>10} {'B median':>10} {'B/A':>6} {'spread A':>8} "
          f"{'spread B':>8}  verdict")
    slower = 0
    for label in sorted(set(figures["A"]) & set(figures["B"])):
        a, b = figures["A"][label], figures["B"][label]
        ma, mb = statistics.median(a), statistics.median(b)
        sa = (max(a) - min(a)) / ma if ma else 0.0
        sb = (max(b) - min(b)) / mb if mb else 0.0
        ratio = mb / ma if ma else float("nan")
        worse = (ratio - 1) if lower[label] else (1 - ratio)
        verdict = "slower" if worse > max(sa, sb) else "within noise" if worse > 0 else "same or faster"
        slower += verdict == "slower"
        print(f"{label[:92]:<92} {ma:>10.4g} {mb:>10.4g} {ratio:>6.2f} {sa:>8.0%} {sb:>8.0%}  "
              f"{verdict}{' (lower is better)' if lower[label] else ''}")
    only = sorted(set(figures["A"]) ^ set(figures["B"]))
    if only:
        print("rows in one tree only: " + "; ".join(only))
    print(f"{slower} rows slower beyond the noise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
