import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CRYSTALFLOW_DATA", REPO.parent / "shared" / "data"))


def need_data(*rel):
    missing = [r for r in rel if not (DATA / r).exists()]
    if missing:
        pytest.skip(f"shared data not found: {', '.join(str(DATA / m) for m in missing)}")
    return [DATA / r for r in rel]


@pytest.fixture
def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def silicon():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.6), ["Si"], [[0, 0, 0]])
