"""Print the package-level import diagram of ``hf_vssl`` and check it against the declared layers.

Every ``import`` statement of every module is read from the source (the AST, so imports inside
functions count too); a module belongs to the node of its top-level subpackage (``training``,
``data``, ...) or, at the top of the package, to its own stem (``zoo``); ``hf_vssl/__init__.py``
is the node ``hf_vssl``. The script prints one line per node, ``node -> the nodes it imports``,
then the problems, and exits with status 1 when there is one:

- a cycle between nodes;
- an arrow from a lower layer to a higher one, or between two nodes of one layer;
- a node that :data:`LAYERS` does not place;
- (``--strict``) a function-local import of an hf_vssl module: those hide an arrow from a
  reader of the module's header, and inside the package nothing is too heavy to import.

Usage: ``python scripts/import_graph.py [--strict] [--root hf_vssl]``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

#: Layers, lowest first. A node may import nodes of lower layers only.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "utils", "metrics"),
    ("models",),
    ("data",),
    ("pretext",),
    ("distill",),
    ("evaluation",),
    ("hub",),
    ("training",),
    ("foundation",),  # zero-shot runs reuse the recipes' argument handling; analysis tests foundation models
    ("analysis",),
    ("study",),  # the study grid runs every recipe; nothing in the library imports it
    ("zoo", "_registration"),
    ("hf_vssl",),
]


def node_of(module: str, root: Path) -> str:
    """The node of a dotted module name ``hf_vssl.x.y`` (``hf_vssl`` itself: the root node)."""
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    return parts[1]


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    """``(dotted name, is_package)`` of the file ``path`` under the package folder ``root``."""
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _targets(tree: ast.AST, module: str, is_package: bool, root: Path) -> list[tuple[str, bool, int]]:
    """``(imported hf_vssl module, inside a function, line)`` for every import in ``tree``."""
    package = root.name
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_local = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(
                    (alias.name, local, child.lineno)
                    for alias in child.names
                    if alias.name.split(".")[0] == package
                )
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != package:
                    continue
                if target == package:  # ``from hf_vssl import x``: x may be a subpackage or a name
                    for alias in child.names:
                        is_module = (root / alias.name).is_dir() or (root / f"{alias.name}.py").is_file()
                        found.append(
                            (f"{package}.{alias.name}" if is_module else package, local, child.lineno)
                        )
                else:
                    found.append((target, local, child.lineno))
            visit(child, child_local)

    visit(tree, False)
    return found


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """``({node: imported nodes}, [function-local hf_vssl imports as 'file:line -> module'])``."""
    edges: dict[str, set[str]] = defaultdict(set)
    local_imports: list[str] = []
    for path in sorted(root.rglob("*.py")):
        module, is_package = _module_name(path, root)
        source = node_of(module, root)
        edges[source]  # every node appears, even one that imports nothing
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, local, line in _targets(tree, module, is_package, root):
            if local:
                local_imports.append(f"{path.relative_to(root.parent)}:{line} -> {target}")
            destination = node_of(target, root)
            if destination != source:
                edges[source].add(destination)
    return dict(edges), local_imports


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of nodes (Tarjan), each as a node list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return groups


def layer_problems(edges: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """Arrows that do not point to a lower layer, and nodes no layer places."""
    level = {node: i for i, group in enumerate(layers) for node in group}
    problems = [
        f"{node}: not placed in any layer (add it to LAYERS)"
        for node in sorted(set(edges) | {d for ds in edges.values() for d in ds})
        if node not in level
    ]
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if source in level and target in level and level[target] >= level[source]:
                kind = "sideways" if level[target] == level[source] else "upward"
                problems.append(f"{kind} arrow: {source} -> {target}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        default=str(Path(__file__).resolve().parent.parent / "hf_vssl"),
        help="the package folder (default: this repository's hf_vssl)",
    )
    parser.add_argument("--strict", action="store_true", help="also fail on function-local hf_vssl imports")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / "__init__.py").is_file():
        parser.error(f"--root {root}: not a Python package folder")
    edges, local_imports = import_graph(root)
    level = {node: i for i, group in enumerate(LAYERS) for node in group}
    print("package import diagram (node -> nodes it imports), lowest layer first:")
    for node in sorted(edges, key=lambda n: (level.get(n, len(LAYERS)), n)):
        print(f"  {node:<14} -> {', '.join(sorted(edges[node], key=lambda n: (level.get(n, 99), n))) or '-'}")
    problems = [f"cycle: {' <-> '.join(group)}" for group in find_cycles(edges)]
    problems += layer_problems(edges, LAYERS)
    if local_imports:
        print(f"function-local hf_vssl imports ({len(local_imports)}):")
        print("\n".join(f"  {line}" for line in local_imports))
        if args.strict:
            problems.append(f"{len(local_imports)} function-local hf_vssl imports (--strict)")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print("ok: no cycle, every arrow points down" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
