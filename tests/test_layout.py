"""The package's layout rules, checked on its source (``ast``, nothing imported):

* no import circle between modules (imports inside functions count too: a lazy import that
  closes a circle is still a circle a reader has to untangle);
* only ``export/`` and ``cli/`` import ``seagull_edge.export`` (building is export's job; export
  may import backends, kernels and the model, not the reverse);
* ``runtime/`` and the lean backends never import torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import seagull_edge

PACKAGE = Path(seagull_edge.__file__).resolve().parent
MAY_IMPORT_EXPORT = ("export", "cli")  # building is export's job; only it and the CLI reach it
# The lean runtime and the backends it may load without torch.
NO_TORCH = ("backends/__init__.py", "backends/base.py", "backends/tensorrt.py", "backends/onnxruntime.py",
            "inputs.py", "errors.py", "fileio.py", "vocab.py")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """seagull_edge/backends/tensorrt.py -> "seagull_edge.backends.tensorrt" (a package: its name)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every module a file imports, at the top level and inside functions, as dotted names.

    ``import a.b`` -> a.b; ``from a import b`` -> a and a.b (b may be a module); relative imports
    are resolved against the file's package; ``importlib.import_module("a.b")`` and
    ``__import__("a.b")`` with a literal name count as well.
    """
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.add(node.args[0].value)
    return found


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def import_direction_violations(package: Path = PACKAGE) -> list[str]:
    """What breaks the import directions: a module outside export/ and cli/ importing
    seagull_edge.export, and runtime/ or a lean backend importing torch."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        imports = imported_modules(path, package)
        if rel.split("/")[0] not in MAY_IMPORT_EXPORT:
            bad += [f"{rel} imports {m}" for m in sorted(imports) if is_under(m, "seagull_edge.export")]
        if rel in NO_TORCH or rel.startswith("runtime/"):
            bad += [f"{rel} imports {m}" for m in sorted(imports) if is_under(m, "torch")]
    return bad


def test_import_directions_have_no_circle():
    assert import_direction_violations() == []
    # the checker sees what it must: the imports this split relies on, top level and lazy alike
    assert "seagull_edge.backends.tensorrt" in imported_modules(PACKAGE / "export" / "trt.py")
    assert "seagull_edge.kernels.trt_plugin" in imported_modules(PACKAGE / "export" / "trt_build.py")
    assert "seagull_edge.kernels.trt_plugin.register_plugins" in imported_modules(PACKAGE / "backends" / "tensorrt.py")


def test_import_direction_checker_catches_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "seagull_edge"
    for sub in ("backends", "kernels", "export"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "backends" / "tensorrt.py").write_text(
        "def f():\n    from ..export.trt import export_trt\n    import torch.nn\n")
    (pkg / "backends" / "onnxruntime.py").write_text("import importlib\nimportlib.import_module('seagull_edge.export')\n")
    (pkg / "kernels" / "x.py").write_text("from seagull_edge import export\n")
    (pkg / "export" / "trt.py").write_text("from seagull_edge.backends import tensorrt\nimport torch\n")  # allowed
    assert import_direction_violations(pkg) == [
        "backends/onnxruntime.py imports seagull_edge.export",
        "backends/tensorrt.py imports seagull_edge.export.trt",
        "backends/tensorrt.py imports seagull_edge.export.trt.export_trt",
        "backends/tensorrt.py imports torch.nn",
        "kernels/x.py imports seagull_edge.export",
    ]


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """seagull_edge module -> the seagull_edge modules it imports (``from pkg import name`` counts
    as importing ``pkg.name`` when that is a module, and ``pkg``)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for m in imported_modules(path, package):
            while m and m not in files:  # "pkg.module.function" -> "pkg.module"
                m = m.rpartition(".")[0]
            # The root package is a lazy facade (``seagull_edge.Assessor`` loads the runtime on first
            # use); ``from seagull_edge import vocab`` depends on vocab, not on that facade.
            if m and m != name and m != "seagull_edge":
                deps.add(m)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    graph = module_graph()
    assert "seagull_edge.backends" in graph["seagull_edge.runtime.pipeline"]  # the graph sees real imports
    assert import_cycles(graph) == []


def test_cycle_finder_finds_a_lazy_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
