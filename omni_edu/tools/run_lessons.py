"""Run the lessons in a chosen profile: executed notebooks, figures, timings, the site.

One runner serves three jobs, and the site a fourth:

* **Check** every lesson in a profile (the gpu-size dry run of the tests, the GPU check
  script): each notebook runs top to bottom in a fresh kernel; a failure names the cell and
  the error.
* **Measure** each lesson: wall time, peak memory (RSS, and CUDA memory on a GPU), and the
  model FLOPs utilisation (MFU) of its training, from :func:`omni_edu.train.run_stats`,
  read from the kernel by a cell the runner appends (and removes again from the saved
  notebook).
* **Record** the figures lessons report (:mod:`omni_edu.report` appends them to the file
  named by ``OMNI_FIGURES``) and, with ``--readme``, write them into README.md between
  ``<!-- figures:start -->`` and ``<!-- figures:end -->`` with the profile and the machine.
* **Render** the course as a static site: :mod:`omni_edu.tools.site` builds on this
  runner (``python -m omni_edu.tools.site``).

Usage::

    python -m omni_edu.tools.run_lessons run --profile ci --out runs/ci --json runs/ci.json
    python -m omni_edu.tools.run_lessons run --profile ci --readme      # refresh README figures
    python -m omni_edu.tools.run_lessons readme runs/cpu.json runs/cpu.jsonl  # from a saved run
    python -m omni_edu.tools.run_lessons readme --executed .ci-executed/notebooks  # the suite's

The tools it needs (nbclient, ipykernel) come with the ``dev`` extra; they are imported
only when used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omni_edu.report import FIGURES_ENV
from omni_edu.tools.machine import machine_info
from omni_edu.tools.notebook_io import cell_source, iter_notebooks
from omni_edu.tools.readme_figures import (
    executed_run,
    figures_markdown,
    figures_path,
    read_figures,
    replace_figures_section,
    verdict_differences,
)

ROOT = Path(__file__).resolve().parents[2]
STATS_MARKER = "OMNI_LESSON_STATS "
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

# Appended to each notebook before it runs, removed from the saved copy. It prints what the
# kernel trained (omni_edu.train.run_stats: steps, seconds inside fit(), estimated FLOPs)
# and the memory it peaked at, on one line the runner parses.
STATS_CELL = f"""\
import json as _json
import resource as _resource
import sys as _sys

import torch as _torch

from omni_edu.profiles import amp_dtype as _amp_dtype
from omni_edu.train import run_stats as _run_stats

_stats = dict(_run_stats())
_rss = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
_stats["peak_rss_mib"] = _rss / (2**20 if _sys.platform == "darwin" else 2**10)
_stats["device"], _stats["dtype"] = "cpu", "fp32"
if _torch.cuda.is_available() and _torch.cuda.is_initialized():
    _stats["device"] = _torch.cuda.get_device_name(0)
    _stats["peak_cuda_mib"] = _torch.cuda.max_memory_allocated() / 2**20
    _stats["dtype"] = {{_torch.bfloat16: "bf16", _torch.float16: "fp16"}}.get(
        _amp_dtype(_torch.device("cuda")), "fp32"
    )
print("{STATS_MARKER}" + _json.dumps(_stats))
"""


@dataclass
class LessonRun:
    """What running one notebook gave."""

    notebook: str
    ok: bool
    wall_s: float
    error: str | None = None  # the failing cell and its error, when not ok
    stats: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ the machine
def datasheet_peak(device: str, dtype: str) -> float | None:
    """Peak dense FLOP/s of ``device`` (a CUDA device name) in ``dtype`` from the datasheet
    table in :mod:`omni_edu.cost`, or ``None`` for a device the table does not hold."""
    from omni_edu.cost import HARDWARE

    for key, preset in HARDWARE.items():
        if re.search(rf"\b{re.escape(key)}\b", device, flags=re.IGNORECASE):
            return preset.peak_flops.get(dtype)
    return None


def add_mfu(stats: dict[str, Any], measured_peak: float | None = None) -> dict[str, Any]:
    """Add achieved FLOP/s and MFU to a lesson's stats (in place; returns them).

    MFU = estimated training FLOPs / seconds inside ``fit()`` / the device's peak: the
    datasheet's for the device and dtype when :mod:`omni_edu.cost` has it, else
    ``measured_peak`` (a large matmul timed on this device), else none (MFU ``None``).
    """
    seconds, flops = stats.get("seconds", 0.0), stats.get("flops", 0.0)
    achieved = flops / seconds if seconds > 0 and flops > 0 else None
    peak = datasheet_peak(stats.get("device", ""), stats.get("dtype", "fp32"))
    source = "datasheet" if peak else None
    if peak is None and measured_peak:
        peak, source = measured_peak, "measured matmul"
    stats["achieved_flops_per_s"] = achieved
    stats["peak_flops_per_s"], stats["peak_source"] = peak, source
    stats["mfu"] = achieved / peak if achieved and peak else None
    return stats


# ------------------------------------------------------------------------- running notebooks
def _current_env_kernel_manager() -> Any:
    """A kernel manager whose ``python3`` kernel is this interpreter (as nbval's
    ``--nbval-current-env``), whatever kernel specs the machine has installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    # Asynchronous, as nbclient expects: with a blocking client, waiting for a cell's output
    # blocks nbclient's event loop, and a cell's time limit never fires.
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnv())


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def describe_failure(nb: dict[str, Any], index: int, ename: str, evalue: str) -> str:
    """Which cell failed (its number, first lines) and how (the traceback's last lines)."""
    cell = nb["cells"][index]
    code_number = sum(1 for c in nb["cells"][: index + 1] if c.get("cell_type") == "code")
    source = cell_source(cell).splitlines()
    shown = "\n".join(f"    {line}" for line in source[:6])
    more = f"\n    ... ({len(source) - 6} more lines)" if len(source) > 6 else ""
    trace = ""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            trace = _strip_ansi("\n".join(output.get("traceback", [])))
    tail = "\n".join(trace.splitlines()[-25:])
    return f"cell {index} (code cell {code_number}) raised {ename}: {evalue}\n{shown}{more}\n{tail}"


def execute_notebook(
    path: str | Path,
    profile: str,
    *,
    out_path: str | Path | None = None,
    figures_file: str | Path | None = None,
    inline_figures: bool = False,
    timeout: int = 900,
    limit_s: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> LessonRun:
    """Run one notebook top to bottom in a fresh kernel with ``OMNI_PROFILE=profile``.

    The kernel starts in the notebook's folder. ``timeout`` bounds each cell, ``limit_s``
    the whole notebook: a cell still running then is interrupted and the run counts as
    failed, with the time limit as its error (the stats cell still runs, so the partial
    run's memory and MFU are kept). ``inline_figures`` makes matplotlib draw PNGs into the
    outputs (for the site; the tests keep the faster Agg backend). With ``out_path`` the
    executed notebook is saved there, outputs included, minus the stats cell. Never raises
    for a failing notebook: the result says what failed.
    """
    import nbformat
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    stats_cell = nbformat.v4.new_code_cell(STATS_CELL)
    env = {**os.environ, "OMNI_PROFILE": profile, **(extra_env or {})}
    # A saved notebook keeps the figures it recorded beside it (the site and the README
    # read them from there); they are added to ``figures_file`` after the run.
    own_figures = figures_path(out_path) if out_path is not None else None
    if own_figures is not None:
        own_figures.parent.mkdir(parents=True, exist_ok=True)
        own_figures.write_text("", encoding="utf-8")
    recorded = own_figures if own_figures is not None else figures_file
    if recorded is not None:
        env[FIGURES_ENV] = str(Path(recorded).resolve())
    if inline_figures:
        env["MPLBACKEND"] = INLINE_BACKEND
    started = time.time()
    start = time.perf_counter()
    deadline = start + limit_s if limit_s else None

    def cell_timeout(cell: Any) -> int:
        if cell is stats_cell:
            return min(timeout, 120)  # past the limit too: the partial run's numbers count
        if deadline is None:
            return timeout
        return max(1, min(timeout, int(deadline - time.perf_counter())))

    km = _current_env_kernel_manager()
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        timeout_func=cell_timeout,
        interrupt_on_timeout=True,  # keep the kernel, so that the stats cell can still run
        error_on_timeout={"ename": "TimeoutError", "evalue": "the cell ran past its time limit"},
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    error = None
    stats: dict[str, Any] = {}
    client.reset_execution_trackers()
    # The kernel's own stderr (start-up chatter; a crash's last words) goes to a file,
    # quoted when the kernel dies.
    kernel_log = tempfile.TemporaryFile("w+", encoding="utf-8")
    try:
        with client.setup_kernel(env=env, stderr=kernel_log):
            info = client.wait_for_reply(client.kc.kernel_info())
            if info is not None and "language_info" in info["content"]:
                nb.metadata["language_info"] = info["content"]["language_info"]
            for index, cell in enumerate(nb.cells):
                if deadline is not None and time.perf_counter() >= deadline:
                    error = f"stopped before cell {index}: the notebook ran past {limit_s:.0f} s"
                    break
                try:
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                except CellExecutionError as exc:
                    if exc.ename == "TimeoutError" and deadline is not None:
                        exc.evalue = f"the notebook ran past its limit of {limit_s:.0f} s"
                    error = describe_failure(nb, index, exc.ename, exc.evalue)
                    break
            nb.cells.append(stats_cell)
            try:
                client.execute_cell(stats_cell, len(nb.cells) - 1)
            except CellExecutionError:
                pass  # a lesson that broke before importing omni_edu: no stats, error kept
            client.set_widgets_metadata()
    except DeadKernelError as exc:
        kernel_log.seek(0)
        last_words = "\n".join(kernel_log.read().strip().splitlines()[-10:])
        error = error or f"the kernel died ({exc}); out of memory is the usual cause\n{last_words}"
    finally:
        kernel_log.close()
        if nb.cells and nb.cells[-1] is stats_cell:
            nb.cells.pop()
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    wall = time.perf_counter() - start
    for output in stats_cell.get("outputs", []):
        for line in str(output.get("text", "")).splitlines():
            if line.startswith(STATS_MARKER):
                stats = json.loads(line[len(STATS_MARKER) :])
    if out_path is not None:
        from omni_edu.tools.run_record import make_record, write_atomically, write_record

        write_atomically(out_path, nbformat.writes(nb))
        code = [c for c in nb.cells if c.cell_type == "code"]
        record = make_record(
            f"{path.parent.name}/{path.name}",
            profile=profile,
            runner="run_lessons",
            started=started,
            finished=time.time(),
            wall_s=wall,
            cells=len(code),
            cells_run=sum(c.get("execution_count") is not None for c in code),
            ok=error is None,
        )
        write_record(out_path, record)
        if figures_file is not None:
            with open(figures_file, "a", encoding="utf-8") as f:
                f.write(own_figures.read_text(encoding="utf-8"))
    return LessonRun(str(path), error is None, round(wall, 2), error, stats)


def lesson_notebooks(paths: list[str | Path] | None = None) -> list[Path]:
    """The notebooks to run: those under ``paths``, or every lesson in ``notebooks/``."""
    found = iter_notebooks(paths or [ROOT / "notebooks"])
    if not found:
        raise ValueError(f"no notebooks found under {paths or [ROOT / 'notebooks']}.")
    return found


def run_lessons(
    paths: list[str | Path] | None,
    profile: str,
    *,
    out_dir: str | Path | None = None,
    figures_file: str | Path | None = None,
    inline_figures: bool = False,
    timeout: int = 900,
    lesson_limit_s: float | None = None,
    total_limit_s: float | None = None,
    measured_peak: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every notebook; return a report with the machine and one entry per notebook.

    ``lesson_limit_s`` bounds each notebook; ``total_limit_s`` the whole run: each lesson
    then gets an equal share of the time left for the lessons not yet run, so a lesson
    that finishes early leaves more to the ones after it, and every lesson gets a start.
    """
    from omni_edu.profiles import get_profile

    get_profile(profile)  # a clear error for a typo, before any kernel starts
    notebooks = lesson_notebooks(paths)
    runs = []
    start = time.perf_counter()
    for number, path in enumerate(notebooks):
        limit = lesson_limit_s
        if total_limit_s is not None:
            left = total_limit_s - (time.perf_counter() - start)
            share = max(1.0, left / (len(notebooks) - number))
            limit = min(limit, share) if limit else share
        if progress:
            within = f" (limit {limit:.0f} s)" if limit else ""
            print(f"{path.name}: running in {profile}{within} ...", flush=True)
        out = Path(out_dir) / path.parent.name / path.name if out_dir else None
        run = execute_notebook(
            path,
            profile,
            out_path=out,
            figures_file=figures_file,
            inline_figures=inline_figures,
            timeout=timeout,
            limit_s=limit,
        )
        add_mfu(run.stats, measured_peak)
        runs.append(run)
        if progress:
            mfu = run.stats.get("mfu")
            extra = f", MFU {mfu:.1%}" if mfu else ""
            state = "ok" if run.ok else "FAILED"
            print(f"{path.name}: {state} in {run.wall_s:.1f} s{extra}", flush=True)
            if run.error:
                print(run.error, flush=True)
    return {
        "profile": profile,
        "machine": machine_info(),
        "date": datetime.date.today().isoformat(),
        "total_wall_s": round(time.perf_counter() - start, 1),
        "lessons": [asdict(run) for run in runs],
    }


# --------------------------------------------------------------------------- README figures
def write_readme(report: dict[str, Any], figures: list[dict[str, Any]], readme: Path) -> None:
    """Write one run's section into ``readme`` (a profile other than ci also gets the claims
    whose verdicts differ from the ci section's)."""
    profile = report["profile"]
    section = figures_markdown(report, figures)
    text = replace_figures_section(readme.read_text(encoding="utf-8"), section, profile)
    if profile != "ci":  # say where this profile's verdicts differ from ci's
        differ = verdict_differences(text, profile)
        note = "\n\n**Verdicts that differ from the `ci` profile's:** " + (
            "; ".join(differ) if differ else "none."
        )
        text = replace_figures_section(text, section + note, profile)
    readme.write_text(text, encoding="utf-8")
    print(f"wrote the figures of {len(report['lessons'])} lessons into {readme}")


# ---------------------------------------------------------------------------------- the CLI
def _readme_command(args: argparse.Namespace) -> int:
    """Write the README section of an earlier run: from the lessons it saved
    (``--executed``: their run records and figures), or from its ``--json`` report and
    ``--figures`` file."""
    if args.executed:
        report, figures = executed_run(args.executed)
    elif args.report and args.figures:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
        figures = read_figures(args.figures)
    else:
        print("readme: give --executed DIR, or a run's REPORT and FIGURES.", file=sys.stderr)
        return 2
    failed = [Path(r["notebook"]).name for r in report["lessons"] if not r["ok"]]
    if failed:
        print(f"README.md left as it was: {', '.join(failed)} failed.", file=sys.stderr)
        return 1
    write_readme(report, figures, Path(args.readme_path))
    return 0


def _run_command(args: argparse.Namespace) -> int:
    figures = args.figures
    cleanup = None
    if args.readme and figures is None:
        cleanup = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)
        figures = cleanup.name
    if figures is not None:
        Path(figures).write_text("", encoding="utf-8")  # this run's figures only
    report = run_lessons(
        args.notebooks,
        args.profile,
        out_dir=args.out,
        figures_file=figures,
        inline_figures=args.inline_figures,
        timeout=args.timeout,
        lesson_limit_s=args.lesson_limit,
        total_limit_s=args.total_limit,
        measured_peak=args.measured_peak,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    failed = [r for r in report["lessons"] if not r["ok"]]
    if args.readme:
        if failed:
            print("README.md left as it was: some lessons failed.", file=sys.stderr)
        else:
            write_readme(report, read_figures(figures), Path(args.readme_path))
    if cleanup is not None:
        os.unlink(cleanup.name)
    print(
        f"{len(report['lessons']) - len(failed)} passed, {len(failed)} failed "
        f"in {report['total_wall_s']:.0f} s ({report['profile']} profile)"
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run lessons in a profile; report time, memory, MFU")
    run.add_argument("notebooks", nargs="*", help="notebooks or folders (default: notebooks/)")
    run.add_argument("--profile", default="ci")
    run.add_argument("--out", help="save the executed notebooks under this folder")
    run.add_argument("--json", help="write the report (machine, per-lesson stats) here")
    run.add_argument("--figures", help="collect the lessons' figures (JSON lines) here")
    run.add_argument("--readme", action="store_true", help="write the figures into README.md")
    run.add_argument("--readme-path", default=str(ROOT / "README.md"))
    run.add_argument("--inline-figures", action="store_true", help="store figures as PNGs")
    run.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    run.add_argument("--lesson-limit", type=float, help="seconds per notebook")
    run.add_argument("--total-limit", type=float, help="seconds for all (shared fairly)")
    run.add_argument(
        "--measured-peak",
        type=float,
        help="FLOP/s for MFU where the datasheet table lacks the device",
    )
    readme = sub.add_parser(
        "readme", help="write README.md's section of an earlier run (its --json and --figures)"
    )
    readme.add_argument("report", nargs="?", help="the run's --json report")
    readme.add_argument("figures", nargs="?", help="the run's --figures file")
    readme.add_argument(
        "--executed",
        help="a folder of executed lessons with their run records and figures (the test "
        "suite's OMNI_EXECUTED_DIR/notebooks, or run --out DIR/notebooks)",
    )
    readme.add_argument("--readme-path", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    return _readme_command(args) if args.command == "readme" else _run_command(args)


if __name__ == "__main__":
    sys.exit(main())
