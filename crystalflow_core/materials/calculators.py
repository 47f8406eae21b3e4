"""A universal potential's side of relaxation and MD: its ASE calculator (CHGNet with one backward pass,
or SevenNet-0), CHGNet's batched static evaluation, the worker every process of a potential holds, the one
worker pool (one thread per process, records kept as tasks finish), and what each record says of its potential."""

from __future__ import annotations

import contextlib
import functools
import warnings

from tqdm import tqdm

from crystalflow_core.errors import Interrupted, WorkerError
from crystalflow_core.io import append_jsonl
from crystalflow_core.materials.potentials import potential
from crystalflow_core.parallel import serve_map

STRESS_GPA_PER_EV_A3 = 160.21766208  # CHGNet's own factor: stress from eV/A^3 to GPa


def _one_backward_pass(model):
    """CHGNet (0.3) takes forces and stress with two autograd.grad calls, each with create_graph=True: two
    backward passes through the network and a second-order graph inference never uses. This runs the
    network for the energy only and takes both derivatives in one first-order backward pass (the
    positions are intermediates of the strained lattice, so the strain gradient still counts every path):
    the same numbers, about 1.25x faster per call on one CPU thread than two first-order passes and 1.7x than
    CHGNet's own (`benchmarks/chgnet_batch.py`)."""
    import torch

    network = type(model)._compute

    def compute(g, *, compute_force: bool = False, compute_stress: bool = False, **kwargs) -> dict:
        pred = network(model, g, compute_force=False, compute_stress=False, **kwargs)
        if not (compute_force or compute_stress):
            return pred
        energy = pred["e"] * pred["atoms_per_graph"] if model.is_intensive else pred["e"]  # per structure
        positions = list(g.atom_positions) if compute_force else []
        strains = list(g.strains) if compute_stress else []
        grads = torch.autograd.grad(energy.sum(), positions + strains)
        if compute_force:
            pred["f"] = [-f for f in grads[: len(positions)]]
        if compute_stress:
            scale = STRESS_GPA_PER_EV_A3 / g.volumes.detach()
            pred["s"] = [s * k for s, k in zip(grads[len(positions) :], scale)]
        return pred

    return compute


@contextlib.contextmanager
def _fast_derivatives(model):
    """`model` computes forces and stress in one backward pass (`_one_backward_pass`) inside the block, its
    weights frozen (autograd then records nothing for them)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    model._compute = _one_backward_pass(model)
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        del model._compute
        for p in trainable:
            p.requires_grad_(True)


def make_calculator(model, derivatives=_fast_derivatives):
    """CHGNetCalculator of a loaded CHGNet for inference (forces and stress in one backward pass), CPU.
    derivatives: the context each calculation runs in, given the model (another way to take forces and
    stress: `benchmarks/chgnet_batch.py` compares them)."""
    from chgnet.model.dynamics import CHGNetCalculator

    class _Calculator(CHGNetCalculator):
        # the free energy is the energy (no electronic entropy): ASE's preconditioned L-BFGS asks for it
        implemented_properties = (*CHGNetCalculator.implemented_properties, "free_energy")

        def calculate(self, *args, **kwargs):
            with derivatives(self.model):
                super().calculate(*args, **kwargs)
            self.results["free_energy"] = self.results["energy"]

    return _Calculator(model=model, use_device="cpu", on_isolated_atoms="ignore")


def seed_prediction(calc, atoms, pred: dict) -> None:
    """Store a (batched) CHGNet prediction for `atoms` in `calc` exactly as CHGNetCalculator would."""
    extensive = len(atoms) if calc.model.is_intensive else 1
    calc.atoms = atoms.copy()
    calc.results = {"energy": pred["e"] * extensive, "forces": pred["f"], "stress": pred["s"] * calc.stress_weight}
    if "m" in pred:
        calc.results["magmoms"] = pred["m"]
    calc.results["free_energy"] = calc.results["energy"]


def static_predictions(structures: list, model, batch_size: int) -> list:
    """Energy/forces/stress of many structures in batched CHGNet calls; an entry is the prediction
    dict or the exception text for a structure CHGNet cannot take (the others are kept)."""
    out: list = [None] * len(structures)
    graphs, where = [], []
    for i, s in enumerate(structures):
        try:
            graphs.append(model.graph_converter(s))
            where.append(i)
        except Exception as exc:
            out[i] = f"{type(exc).__name__}: {str(exc)[:200]}"
    try:
        with _fast_derivatives(model):
            preds = model.predict_graph(graphs, task="efsm", batch_size=batch_size) if graphs else []
        preds = [preds] if isinstance(preds, dict) else preds
    except Exception:  # one bad graph spoils the batch: retry one by one to keep the others
        preds = []
        for g in graphs:
            try:
                with _fast_derivatives(model):
                    preds.append(model.predict_graph(g, task="efsm"))
            except Exception as exc:
                preds.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    for i, p in zip(where, preds):
        out[i] = p
    return out


def load_potential(name: str) -> tuple:
    """(model, ASE calculator) of a potential on the CPU: CHGNet (the model too: its batched static
    evaluation) or SevenNet-0 (its ASE calculator; model None). The weights ship inside the packages."""
    pot = potential(name)
    if pot.name == "chgnet":
        from chgnet.model import CHGNet

        model = CHGNet.load(verbose=False)
        return model, make_calculator(model)
    try:
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise ImportError(f"relax.model {name} needs the sevenn package: pip install -e '.[sevenn]'") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return None, SevenNetCalculator(model=pot.model, device="cpu")


class PotentialWorker:
    """What every worker process of a potential holds: the model and one calculator (loaded once, reused
    for every structure; ASE recomputes for new atoms), on one thread."""

    def __init__(self, name: str):
        import torch

        torch.set_num_threads(1)
        self.potential = potential(name)
        self.model, self.calc = load_potential(name)


# one thread per worker process: the pool gives every core its own process
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def potential_pool(worker, settings: dict, tasks: list, workers: int, out_path, desc: str, progress: bool = True):
    """The one pool of a potential: `tasks` on `workers` spawned processes of `worker(settings)` (a PotentialWorker),
    one thread each; each finished task's records (a record or a list of them) are appended to `out_path`
    at once, so a killed run keeps them."""
    if not tasks:
        return
    n = sum(len(t) if isinstance(t, list) else 1 for t in tasks)
    kept = 0
    try:
        with tqdm(total=n, desc=desc, disable=not progress, mininterval=5) as bar:
            pool = serve_map(worker, (settings,), tasks, max(1, min(workers, len(tasks))), env=ONE_THREAD, desc=desc)
            for recs in pool:
                recs = recs if isinstance(recs, list) else [recs]
                for rec in recs:
                    append_jsonl(out_path, rec)
                kept += len(recs)
                bar.update(len(recs))
    except WorkerError as exc:  # what the rerun will not redo
        raise WorkerError(f"{exc}: {kept} of {n} structures kept in {out_path}; a rerun continues") from exc
    except (Interrupted, KeyboardInterrupt) as exc:
        exc.add_note(f"{kept} of {n} structures kept in {out_path}")
        raise


@functools.lru_cache
def potential_fields(pot) -> dict:
    """What every relaxation record says of its potential: name, package version, model, energy scale."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(pot.package)
    except PackageNotFoundError:
        v = ""
    return {
        "potential": pot.name,
        "potential_version": v,
        "potential_model": pot.model,
        "energy_scale": pot.energy_scale,
    }
