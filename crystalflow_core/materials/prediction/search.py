"""What a prediction job samples: its sampling settings, each candidate's provenance key, and the search's
stopping rule (AIRSS's: a composition stops when its best polymorph has been found `until.found` times)."""

from __future__ import annotations

from crystalflow_core import __version__
from crystalflow_core.config import defaults
from crystalflow_core.generative.sampling import FlowSampler, SampleSettings
from crystalflow_core.io import content_key


def sample_settings(cfg: dict, job: dict) -> SampleSettings:
    """The job's sampling point on the settings of its run's `sample` section (schema defaults for a
    checkpoint): integrator, steps, seed and batch size from the job."""
    section = cfg["runs"][job["run"]]["sample"] if job["run"] else defaults("sample")
    return SampleSettings.from_section(
        section,
        "csp",
        job["steps"],
        method=job["method"],
        seed=job["seed"],
        batch_size=job["batch_size"],
        pair_budget=None,
    )


def item_key(model_sha: str, settings: SampleSettings, item: dict) -> str:
    """Provenance of one candidate: model, sampling settings, its id, atoms and condition. Adding candidates,
    compositions or pressures to a job leaves the keys of the finished ones as they were."""
    parts = [model_sha, repr(settings), item["id"], item["atom_types"], item.get("condition"), __version__]
    if item.get("wyckoff"):  # a symmetric model's candidate: its space group and Wyckoff positions
        parts.append(item["wyckoff"])
    if item.get("generator", "model") != "model":  # a random or prototype candidate
        parts.append(item["generator"])
    return content_key(parts)


def model_size_cap(sampler: FlowSampler) -> int | None:
    """The largest crystal the model was trained on (atoms), None where the checkpoint does not say."""
    return len(sampler.atom_count_hist) - 1 if sampler.atom_count_hist else None


def stopped_groups(cands, ranked, stopped: dict[str, int], found: int) -> dict[str, int]:
    """The groups (composition and pressure) whose search stops after this round: those stopped before, and
    those whose best polymorph has now been found `found` times, each with the candidates it used."""
    out = dict(stopped)
    for group, g in ranked.groupby("group"):
        if group not in out and int(g.iloc[0]["n_candidates"]) >= found:
            out[group] = int((cands["group"] == group).sum())
    return out


def relax_group(rec: dict) -> str:
    """What a candidate's enthalpy is compared within while it relaxes (`abandon`): its composition and
    pressure (every cell size together, as the ranking), from its sample record."""
    from collections import Counter

    from pymatgen.core import Composition, Element

    comp = Composition({Element.from_Z(int(z)): n for z, n in Counter(rec["species"]).items()})
    return f"{comp.reduced_formula}_p{float(rec.get('pressure_gpa') or 0.0):g}"


class Twins:
    """Candidates whose generated structures match an earlier one of the same cell content and pressure
    (StructureMatcher at `tolerances`: ltol, stol, angle_tol; volumes scaled, as relaxation sets them), each
    mapped to the first of its kind (`of`): those relax once and are counted for each. Only structures of one
    space group (spglib at 0.1 A) are compared; flagged samples never match. Carried across a search's rounds:
    each round adds its new candidates only, and the first of a kind stays the one relaxed (never a later
    candidate whose id sorts first). `tolerances` None: every candidate relaxes."""

    def __init__(self, tolerances: dict | None):
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self.tolerances = tolerances
        self.of: dict[str, str] = {}
        self._firsts: dict[tuple, list] = {}  # (cell content, pressure, space group) -> [(id, structure)] relaxed
        self._seen: set[str] = set()
        t = tolerances
        self._sm = StructureMatcher(ltol=t["ltol"], stol=t["stol"], angle_tol=t["angle_tol"], scale=True) if t else None

    def add(self, records: list[dict]) -> dict[str, str]:
        """Compare the records not seen before with the firsts so far, in order; returns `of`."""
        if not self.tolerances:
            return self.of
        from crystalflow_core.generative.sampling import record_to_structure
        from crystalflow_core.materials.prediction.candidates import spacegroup

        for rec in records:
            if rec["id"] in self._seen:
                continue
            self._seen.add(rec["id"])
            s = record_to_structure(rec)
            if s is None:
                continue
            key = (s.composition.formula, float(rec.get("pressure_gpa") or 0.0), spacegroup(s, 0.1)[1])
            same = self._firsts.setdefault(key, [])
            match = next((sid for sid, t in same if self._sm.fit(t, s)), None)
            if match is None:
                same.append((rec["id"], s))
            else:
                self.of[rec["id"]] = match
        return self.of


def twins(records: list[dict], tolerances: dict | None) -> dict[str, str]:
    """{twin: the first of its kind} among `records`, in their order (see Twins)."""
    return dict(Twins(tolerances).add(records))
