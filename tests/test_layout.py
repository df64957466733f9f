"""The package layout of shared/DESIGN.md §3: no import cycles, and the arrows point one way."""
import ast

from conftest import ROOT

PACKAGES = ("fdrl_core", "fdrl_train", "fdrl_export", "fdrl_runtime", "fdrl_eval", "fdrl_bench", "benchmarks")
# What each package may import of ours (besides itself), lazily inside a function too.
ALLOWED = {
    "fdrl_core": set(),
    "fdrl_train": {"fdrl_core"},
    "fdrl_runtime": {"fdrl_core"},
    "fdrl_export": {"fdrl_core", "fdrl_train", "fdrl_runtime"},
    # watch.py, fdrl-train's quality watch, samples through an exported graph (fdrl_train reaches
    # it by name through fdrl_core.entry, not by an import)
    "fdrl_eval": {"fdrl_core", "fdrl_train", "fdrl_runtime", "fdrl_export"},
    "fdrl_bench": set(PACKAGES) - {"benchmarks"},
    "benchmarks": set(PACKAGES),  # the GPU scripts, run from the checkout
}


def _imports() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (ast: every import statement, at any depth)."""
    graph = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            mod = ".".join(parts[:-1] if is_init else parts)
            package = mod.split(".") if is_init else mod.split(".")[:-1]
            deps = set()
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom):
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                        if node.level else node.module
                    deps.add(base)
                    deps.update(f"{base}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            graph[mod] = {d for d in deps if d.split(".")[0] in PACKAGES}
    return graph


def test_no_import_cycles_and_the_arrows_point_one_way():
    graph = _imports()
    mods = set(graph)
    edges = {m: {d for d in deps if d in mods and d != m} for m, deps in graph.items()}
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                   if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert not wrong, wrong
    state, cycles = {}, []

    def visit(u, stack):
        state[u] = "open"
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == "open":
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert not cycles, cycles
    assert len(mods) > 40  # the walk saw the packages (a wrong ROOT would pass vacuously)


def test_the_runtime_imports_no_torch_at_module_level():
    for f in (ROOT / "fdrl_runtime").rglob("*.py"):
        if f.name == "torch.py":
            continue  # the torch backend, imported only when chosen
        tree = ast.parse(f.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert not {n for n in names if n.split(".")[0] in ("torch", "fdrl_train", "fdrl_export")}, f
