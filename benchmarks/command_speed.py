"""Whole-process time of the demo, the closed DSMB report and the SDTM and ADaM exports.

Each command runs as a user runs it (``python -m stalwart ...`` in a fresh process, imports
included) in a scratch folder: ``demo --seed 1``, then on its database ``report --closed
--format both``, ``export sdtm`` and ``export adam``. For each it prints the wall-clock seconds,
the CPU seconds the process used (user + system: on a shared, loaded machine the wall time swings
with the load, the CPU time much less) and the issue's target for the wall time:

    demo < 30 s, report < 10 s, export sdtm < 5 s, export adam < 5 s

``--baseline SRC`` runs the same commands with another source tree (e.g. the main checkout's
``src``) in the same run, each tree on its own demo database, alternating command by command
so that both meet the same load; it then checks that the two trees' outputs are the same:
the demo's results.json (creation time aside), every exported file (XPT headers' and
define.xml's creation times aside) and the closed report (its HTML with times masked, its PDF's
text page by page through ``pdftotext``, where installed). The load average before and after
is printed with the figures. A command that cannot run here (WeasyPrint missing for the PDF,
say) is reported as skipped with its error, and the others still run.

    python3 benchmarks/command_speed.py [--baseline /path/to/other/src] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TARGETS_S = {"demo": 30.0, "report": 10.0, "export sdtm": 5.0, "export adam": 5.0}

_STAMPS = (
    re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d"),  # XPT header creation/modification
    re.compile(rb'CreationDateTime="[^"]*"'),  # define.xml
    re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"),  # ISO times in HTML
)


@dataclass(frozen=True)
class Timing:
    """One command's run: wall and CPU seconds, or why it could not run."""

    wall: float
    cpu: float
    error: str = ""


def _arguments(command: str, folder: Path) -> list[str]:
    database = f"sqlite:///{folder / 'demo' / 'stalwart.db'}"
    return {
        "demo": ["demo", "--seed", "1", "--out", str(folder / "demo")],
        "report": [
            *("report", "--database", database, "--out", str(folder / "dsmb")),
            *("--closed", "--format", "both"),
        ],
        "export sdtm": ["export", "sdtm", "--database", database, "--out", str(folder / "sdtm")],
        "export adam": ["export", "adam", "--database", database, "--out", str(folder / "adam")],
    }[command]


def _run(src: Path, command: str, folder: Path) -> Timing:
    """Run one command with ``src`` first on the path; its wall and CPU (user + sys) seconds."""
    env = dict(os.environ, PYTHONPATH=str(src), MPLBACKEND="Agg")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "stalwart", *_arguments(command, folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    error = "" if process.returncode == 0 else (stderr.strip().splitlines() or ["failed"])[-1]
    return Timing(wall, usage.ru_utime + usage.ru_stime, error)


def _masked(data: bytes) -> bytes:
    for stamp in _STAMPS:
        data = stamp.sub(b"<time>", data)
    return data


def _differences(a: Path, b: Path) -> list[str]:
    """What differs between two trees' outputs (creation times aside)."""
    found = []
    results = [json.loads((f / "demo" / "results.json").read_text()) for f in (a, b)]
    for r in results:
        r.get("provenance", {}).pop("created", None)
        r.pop("created", None)
    if results[0] != results[1]:
        found.append("demo/results.json")
    for sub in ("sdtm", "adam"):
        files = {p.relative_to(a) for p in (a / sub).rglob("*") if p.is_file()}
        other = {p.relative_to(b) for p in (b / sub).rglob("*") if p.is_file()}
        found += sorted(str(p) + " (only one tree)" for p in files ^ other)
        found += sorted(
            str(p)
            for p in files & other
            if _masked((a / p).read_bytes()) != _masked((b / p).read_bytes())
        )
    found += _report_differences(a, b)
    return found


_AUDIT_HEAD = re.compile(rb"(record \d+,\s*)[0-9a-f]{64}")


def _report_masked(data: bytes) -> bytes:
    return _AUDIT_HEAD.sub(rb"\1<audit head>", _masked(data))


def _report_differences(a: Path, b: Path) -> list[str]:
    """The closed report's HTML (creation times aside) and its PDF's text, page by page
    (``pdftotext -layout``; the PDF's bytes hold its creation time in compressed streams).
    The audit chain head's hash is masked too: each tree made its own demo database, whose
    audit records hold their own times (the data, and its hash, are the same)."""
    found = []
    pages = {}
    for tree in (a, b):
        pages[tree] = sorted((tree / "dsmb").glob("*"))
    names = [[p.name for p in pages[t]] for t in (a, b)]
    if names[0] != names[1]:
        return [f"dsmb files {names[0]} vs {names[1]}"]
    pdftotext = shutil.which("pdftotext")
    for x, y in zip(pages[a], pages[b], strict=True):
        if x.suffix == ".html":
            if _report_masked(x.read_bytes()) != _report_masked(y.read_bytes()):
                found.append(f"dsmb/{x.name}")
        elif x.suffix == ".pdf" and pdftotext is not None:
            text = [
                _report_masked(
                    subprocess.run(
                        [pdftotext, "-layout", str(f), "-"], capture_output=True, check=True
                    ).stdout
                )
                for f in (x, y)
            ]
            if text[0] != text[1]:
                found.append(f"dsmb/{x.name} (text)")
        elif x.suffix == ".pdf":
            print(f"note: dsmb/{x.name} not compared (no pdftotext)")
    return found


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another src tree to time beside this one")
    parser.add_argument("--keep", type=Path, help="keep the outputs in this folder")
    parser.add_argument("--summary", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    trees = {"this tree": Path(__file__).resolve().parents[1] / "src"}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    root = Path(tempfile.mkdtemp(prefix="stalwart-speed-"))
    folders = {name: root / name.replace(" ", "-") for name in trees}
    print(f"load average before: {_load()} ({os.cpu_count()} CPUs)")
    timings: dict[str, dict[str, Timing]] = {name: {} for name in trees}
    try:
        for command in TARGETS_S:
            for name, src in trees.items():
                folders[name].mkdir(exist_ok=True)
                timings[name][command] = _run(src, command, folders[name])
        print(f"load average after:  {_load()}")
        for command, target in TARGETS_S.items():
            for name in trees:
                t = timings[name][command]
                if t.error:
                    print(f"{command:12s} {name:10s} skipped: {t.error}")
                    continue
                verdict = "meets" if t.wall < target else "misses"
                print(
                    f"{command:12s} {name:10s} wall {t.wall:6.1f} s  cpu {t.cpu:6.1f} s  "
                    f"target {target:4.0f} s: {verdict}"
                )
        if args.summary is not None:
            args.summary.write_text(
                json.dumps(
                    {
                        name: {
                            c: {"wall": t.wall, "cpu": t.cpu, "error": t.error}
                            for c, t in runs.items()
                        }
                        for name, runs in timings.items()
                    }
                ),
                encoding="utf-8",
            )
        if args.baseline is not None and not any(
            t.error for runs in timings.values() for t in runs.values()
        ):
            diffs = _differences(*folders.values())
            print(
                "outputs identical (creation times aside)"
                if not diffs
                else "OUTPUTS DIFFER: " + ", ".join(diffs)
            )
    finally:
        if args.keep is not None:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
