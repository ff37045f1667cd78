"""The package's layers point one way: no import cycle, no import of SpikeZIP hidden in a
function, and the simulator loads nothing of the training, data or detection code."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spikezip"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """``{module: the spikezip modules it imports at its top}`` and the imports of
    spikezip modules made inside functions (``file:line``)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph, hidden = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                # a name imported from a package is its submodule, if it is one
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found = [t for t in targets if t in modules and t != name]
            if not found:
                continue
            if node.col_offset > 0 and not _in_type_checking(tree, node):
                hidden.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
            edges.update(found)
        graph[name] = edges
    return graph, hidden


def _in_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    return any(
        isinstance(node, ast.If)
        and ast.unparse(node.test) == "TYPE_CHECKING"
        and any(child is target for child in ast.walk(node))
        for node in tree.body
    )


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle_and_hides_no_import_in_a_function():
    graph, hidden = _imports()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    assert not hidden, f"imports of SpikeZIP inside functions: {hidden}"


def test_the_simulator_loads_no_training_data_or_detection_code():
    code = (
        "import sys, spikezip.snn\n"
        "loaded = [m for m in sys.modules if m.startswith(('spikezip.detection', "
        "'spikezip.data', 'spikezip.tasks', 'lightning', 'hydra'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_method_names_are_asked_only_inside_the_methods():
    uses = [
        f"{p.relative_to(PACKAGE.parent)}:{i}"
        for p in PACKAGE.rglob("*.py")
        if "methods" not in p.parts and p.parent.name != "config"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "MethodName." in line
    ]
    assert not uses, uses
