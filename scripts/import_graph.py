"""Print piaohao's import graph between its parts, the import cycles between its modules, and
every function-local import (the usual way to hide a cycle). Used for the structure report.

    .venv/bin/python scripts/import_graph.py [--depth 2]
"""

from __future__ import annotations

import argparse
import ast
import pathlib
from collections import defaultdict

import grimp

PACKAGE = "piaohao"
ROOT = pathlib.Path(__file__).resolve().parent.parent / "src" / PACKAGE


def _part(module: str, depth: int) -> str:
    return ".".join(module.split(".")[: depth + 1])


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with more than one module are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _local_imports() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE) or (
                        isinstance(node, ast.ImportFrom) and node.level > 0):
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} from {'.' * node.level}"
                                 f"{node.module or ''} (in {func.name})")
                elif isinstance(node, ast.Import) and any(a.name.startswith(PACKAGE) for a in node.names):
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} import "
                                 f"{', '.join(a.name for a in node.names)} (in {func.name})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=1, help="1: piaohao.X parts; 2: piaohao.X.Y")
    args = parser.parse_args()
    graph = grimp.build_graph(PACKAGE)
    module_edges: dict[str, set[str]] = defaultdict(set)
    part_edges: dict[str, set[str]] = defaultdict(set)
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            module_edges[importer].add(imported)
            a, b = _part(importer, args.depth), _part(imported, args.depth)
            if a != b:
                part_edges[a].add(b)
    print(f"# import graph of {PACKAGE} ({len(graph.modules)} modules), part -> parts it imports")
    for part in sorted(part_edges):
        print(f"{part} -> {', '.join(sorted(part_edges[part]))}")
    # Package __init__ re-exports make every package "import" its children; leave those out.
    plain = {m: {i for i in deps if not m.startswith(i + ".") and not i.startswith(m + ".")}
             for m, deps in module_edges.items()}
    cycles = _strongly_connected(plain)
    print(f"\n# module import cycles: {len(cycles)}")
    for comp in cycles:
        print("  " + " <-> ".join(comp))
    local = _local_imports()
    print(f"\n# function-local imports of {PACKAGE}: {len(local)}")
    for line in local:
        print("  " + line)


if __name__ == "__main__":
    main()
