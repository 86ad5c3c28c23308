#!/usr/bin/env python3
"""Fails when the engine's module graph has a cycle.

For every folder module (the crate root, gpu/, ops/, models/gemma/, …) the nodes are its direct children (files
and folders) and an edge A -> B is a `crate::…` or `super::…` path in A's sources that names B or something in it.
A cycle between top-level modules (runtime and kernels importing the models, say) or between the files of one
module (mul_mat.rs <-> mul_mat_vec.rs) is reported with the edges that make it. A module's `mod.rs` and its own
children may use each other: one type's implementation split over files, not a layering.

Usage: python3 ci/module_cycles.py [engine/src]
"""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "engine/src")
PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(file: Path) -> list[str]:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return parts


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def targets(file: Path) -> set[tuple[str, ...]]:
    """Module paths (as tuples of names) that `file` refers to, resolved to absolute paths."""
    here = module_of(file)
    is_mod_file = file.name in ("mod.rs", "lib.rs")
    out = set()
    for kind, rest in PATH.findall(strip_comments(file.read_text())):
        names = rest.strip(":").split("::")
        if kind == "crate":
            out.add(tuple(names))
        else:
            # `super` from a/b.rs is a; from a/b/mod.rs it is a too (the parent of module a::b).
            base = here[:-1]
            while names and names[0] == "super":
                names, base = names[1:], base[:-1]
            out.add(tuple(base + names))
    return out


files = sorted(root.rglob("*.rs"))
known = {tuple(module_of(f)) for f in files}


def resolve(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The module a path names: a path into a module names the module (crate::gpu::Context -> gpu)."""
    while path and path not in known:
        path = path[:-1]
    return path or None


def strongly_connected(edges: dict) -> list[list]:
    """The groups of modules that reach each other (Tarjan), each of more than one module: every cycle lies in one."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(n):
        index[n] = low[n] = len(index)
        stack.append(n)
        on_stack.add(n)
        for m in sorted(edges.get(n, ())):
            if m not in index:
                visit(m)
                low[n] = min(low[n], low[m])
            elif m in on_stack:
                low[n] = min(low[n], index[m])
        if low[n] == index[n]:
            group = []
            while True:
                m = stack.pop()
                on_stack.discard(m)
                group.append(m)
                if m == n:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for n in sorted(set(edges) | {m for v in edges.values() for m in v}):
        if n not in index:
            visit(n)
    return groups


failed = False
# One graph per folder module (the crate root included): its direct children, with an edge where one child's files
# name another child (or anything inside it). The folder's own mod.rs is not a child: a parent and its children
# may use each other.
graphs: dict[tuple, dict] = {}
for f in files:
    here = tuple(module_of(f))
    for t in targets(f):
        there = resolve(t)
        if there is None:
            continue
        # The deepest folder holding both: the two sides are different children of it.
        common = 0
        while common < min(len(here), len(there)) and here[common] == there[common]:
            common += 1
        if common >= len(here) or common >= len(there):
            continue  # one contains the other: parent and child
        scope, a, b = here[:common], here[: common + 1], there[: common + 1]
        graphs.setdefault(scope, {}).setdefault(a, set()).add(b)

for scope, edges in sorted(graphs.items()):
    where = "between top-level modules" if scope == () else f"inside {'::'.join(scope)}"
    for group in strongly_connected(edges):
        failed = True
        uses = [f"{'::'.join(a)} -> {'::'.join(b)}" for a in group for b in sorted(edges.get(a, ())) if b in group]
        print(f"module cycle {where} among {', '.join('::'.join(n) for n in group)}: {'; '.join(uses)}",
              file=sys.stderr)

n_edges = sum(len(v) for g in graphs.values() for v in g.values())
print(f"ci/module_cycles.py: {len(known)} modules, {n_edges} edges, {'cycles found' if failed else 'no cycle'}")
if not failed:
    order = []
    edges = graphs.get((), {})
    # One valid layering, lowest first, for the record.
    remaining = set(edges) | {m for v in edges.values() for m in v}
    while remaining:
        free = sorted(n for n in remaining if not (edges.get(n, set()) & remaining))
        order.extend(free)
        remaining -= set(free)
    print("layers (each uses only those before it): " + ", ".join("::".join(n) for n in order))
sys.exit(1 if failed else 0)
