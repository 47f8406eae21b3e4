"""The package's import graph: no circle, no import from a lower layer to a higher one, and the modules
the workflow needs to build its DAG import neither torch, Lightning nor pymatgen."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "crystalflow_core"

# lowest first; a module may import its own layer's modules and those below
LAYERS = [
    {
        "errors",
        "entry",
        "extras",
        "io",
        "layout",
        "logs",
        "parallel",
        "safe_load",
        "sources",
        "points",
        "reruns",
        "compositions",
        "builds",
        "jobs",
        "config",
    },
    {"crystals"},
    {"generative", "materials"},
    {"evaluation"},
    {"stages"},
    {"registry", "stage_wiring", "cli"},
]


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package modules it imports (at the top or inside functions)."""
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crystalflow_core"):
                for alias in node.names:  # `from crystalflow_core import stages` imports a module
                    sub = f"{node.module}.{alias.name}"
                    out.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.startswith("crystalflow_core")}
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    if part == "__init__":
        return 0
    return next(i for i, names in enumerate(LAYERS) if part in names)


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in import_graph())


def test_no_import_climbs_a_layer():
    climbs = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in import_graph().items()
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not climbs, "\n".join(climbs)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (a list of modules, first == last), or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_find_cycle_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    graph = import_graph()
    # a package's __init__ imports its submodules: the edge back from a submodule to its own package is
    # Python's normal order of loading, not a circle of the design
    graph = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_dag_modules_import_no_heavy_library():
    """What the Snakefile imports to build the DAG (config, layout, sources, points, compositions, the
    registry's table) loads without torch, Lightning or pymatgen."""
    code = (
        "import sys\n"
        "import crystalflow_core.config, crystalflow_core.layout, crystalflow_core.sources\n"
        "import crystalflow_core.points, crystalflow_core.compositions, crystalflow_core.registry\n"
        "import crystalflow_core.builds\n"
        "heavy = [m for m in ('torch', 'lightning', 'pymatgen', 'pandas', 'ase') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the DAG's modules import {out.stdout.strip()}"
