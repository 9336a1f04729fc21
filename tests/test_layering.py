"""The package's layering: each subpackage imports only its own modules
and the layers below it, and no module imports itself back through
others (read from the source with ast, lazy imports included)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nst_jax"
#: Bottom to top. A module may import from its own unit and from units of
#: lower layers; units side by side in one layer stay independent.
LAYERS = (
    ("errors",),
    ("io",),
    ("executables",),
    ("figures",),
    ("vgg",),
    ("style",),
    ("optimize", "portrait", "fast"),
    ("weights",),
    ("tflite",),
    ("faces",),
    ("config",),
    ("plan",),
    ("memory",),
    ("drive",),
    ("app",),
    ("evals", "bench"),
    ("api",),
)
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _modules() -> dict[str, set[str]]:
    """{module: the nst_jax modules it imports}, dotted below nst_jax."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__"
                        else rel.parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.split(".")[0] == "nst_jax"):
                base = node.module[len("nst_jax"):].lstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}" if base else alias.name
                    deps.add(full if _exists(full) else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name[len("nst_jax."):] for a in node.names
                            if a.name.startswith("nst_jax."))
        out[name] = {d for d in deps if d and d != name}
    return out


def _exists(dotted: str) -> bool:
    p = PACKAGE.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _unit(module: str) -> str:
    return module.split(".")[0]


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _modules() if m}
    assert units <= set(LEVEL), sorted(units - set(LEVEL))


def test_imports_go_down_the_layers():
    bad = []
    for module, deps in _modules().items():
        if not module:  # nst_jax/__init__.py: the public API, on top.
            continue
        for dep in deps:
            a, b = _unit(module), _unit(dep)
            if a != b and LEVEL[b] >= LEVEL[a]:
                bad.append(f"{module} -> {dep}")
    assert not bad, bad


def test_no_import_cycles():
    graph = _modules()
    state: dict[str, int] = {}  # 1: on the stack, 2: done.
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
