"""The sweep cache: finished runs in a JSON file, keyed by a hash of everything that made
them, so that rerunning lesson 07 is instant and a stopped sweep resumes.

The ci profile's file ships with the course (``notebooks/data/scaling_sweeps.json``); see
:func:`default_cache_path`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from omni_edu.lessons.scaling_laws.budget import SweepConfig
from omni_edu.parts.course_cache import cache_dir
from omni_edu.profiles import get_profile

CACHE_VERSION = 2  # 2: one run per budget, its schedule matched to its length


def default_cache_path(profile: str = "ci") -> Path:
    """Where the sweeps of ``profile`` are cached.

    In a clone of the course: ``notebooks/data/scaling_sweeps.json`` for ``ci``, which ships
    the project's own results, and ``notebooks/data/scaling_sweeps_<profile>.json`` (not
    tracked by git) for ``cpu`` and ``gpu``, so a learner's own runs never change the
    shipped file. Elsewhere (a pip install, Colab): the same names in the working
    directory. The gpu dry run's meaningless numbers go to the course cache
    (:func:`omni_edu.parts.course_cache.cache_dir`, a temporary folder under the tests).
    """
    p = get_profile(profile)
    if p.dry_run:
        return cache_dir(p) / "scaling_sweeps.json"
    name = "scaling_sweeps.json" if p.key == "ci" else f"scaling_sweeps_{p.key}.json"
    repo = Path(__file__).resolve().parents[3]  # omni_edu/lessons/scaling_laws/cache.py
    if (repo / "notebooks").is_dir():
        return repo / "notebooks" / "data" / name
    return Path(name)


class SweepCache:
    """A JSON file of finished runs, keyed by a hash of everything that made them.

    It also keeps each sweep's modality baselines (:func:`modality_baselines`), keyed the
    same way, so that the lesson normalises losses without generating the data again.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.runs: dict[str, dict] = {}
        self.baselines: dict[str, dict] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            if data.get("version") == CACHE_VERSION:
                self.runs = data["runs"]
                self.baselines = data.get("baselines", {})

    @staticmethod
    def key(spec: dict) -> str:
        text = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def get(self, spec: dict) -> list[dict] | None:
        entry = self.runs.get(self.key(spec))
        return None if entry is None else entry["records"]

    def put(self, spec: dict, records: list[dict]) -> None:
        self.runs[self.key(spec)] = {"spec": spec, "records": records}
        self._write()

    def get_baselines(self, spec: dict) -> dict[str, float] | None:
        entry = self.baselines.get(self.key(spec))
        return None if entry is None else entry["baselines"]

    def put_baselines(self, spec: dict, baselines: dict[str, float]) -> None:
        self.baselines[self.key(spec)] = {"spec": spec, "baselines": baselines}
        self._write()

    def _write(self) -> None:
        """JSON with one run per line: small, and a regenerated sweep diffs run by run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")

        def block(entries: dict[str, dict]) -> str:
            rows = [
                f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                for k, v in entries.items()
            ]
            return "{\n" + ",\n".join(rows) + "\n }" if rows else "{}"

        text = (
            f'{{"version": {CACHE_VERSION},\n "runs": {block(self.runs)},\n '
            f'"baselines": {block(self.baselines)}}}\n'
        )
        tmp.write_text(text)
        os.replace(tmp, self.path)


def open_cache(cache: SweepCache | str | Path | None, config: SweepConfig) -> SweepCache:
    if isinstance(cache, SweepCache):
        return cache
    return SweepCache(cache if cache is not None else default_cache_path(config.profile))
