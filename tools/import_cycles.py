#!/usr/bin/env python3
"""Import cycles between the files of one Rust module folder.

    python3 tools/import_cycles.py src/reactor [more folders...]

A file `a.rs` depends on its sibling `b.rs` when its code (comments and the
unit-test module at the end left out) names `super::b`, `self::b` from
mod.rs, `crate::...::<folder>::b`, or lists `b` inside `use super::{...}`.
Prints each group of files that depend on each other in a circle and exits
1 if there is one; prints nothing and exits 0 otherwise. mod.rs is the
folder's contents page: it may name every file, and no file counts as
depending on it.
"""
import re
import sys
from pathlib import Path


def code_of(path):
    text = path.read_text()
    # The unit tests at the end may use anything of the folder.
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def dependencies(folder):
    files = {p.stem: p for p in folder.glob("*.rs") if p.stem != "mod"}
    name = folder.name
    deps = {}
    for stem, path in files.items():
        code = code_of(path)
        named = set()
        for other in files:
            if other == stem:
                continue
            word = re.escape(other)
            patterns = [
                rf"\bsuper::{word}\b",
                rf"\bcrate::(?:\w+::)*{re.escape(name)}::{word}\b",
                rf"\buse\s+super::\{{[^}}]*\b{word}\b",
            ]
            if any(re.search(p, code) for p in patterns):
                named.add(other)
        deps[stem] = named
    return deps


def cycles(deps):
    """Strongly connected groups of more than one file (Kosaraju)."""
    order, seen = [], set()

    def visit(node):
        stack = [(node, iter(sorted(deps[node])))]
        seen.add(node)
        while stack:
            current, children = stack[-1]
            for child in children:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(sorted(deps[child]))))
                    break
            else:
                order.append(current)
                stack.pop()

    for node in sorted(deps):
        if node not in seen:
            visit(node)
    reverse = {node: set() for node in deps}
    for node, children in deps.items():
        for child in children:
            reverse[child].add(node)
    groups, assigned = [], set()
    for node in reversed(order):
        if node in assigned:
            continue
        group, todo = [], [node]
        assigned.add(node)
        while todo:
            current = todo.pop()
            group.append(current)
            for parent in reverse[current]:
                if parent not in assigned:
                    assigned.add(parent)
                    todo.append(parent)
        if len(group) > 1:
            groups.append(sorted(group))
    return groups


def main(folders):
    found = False
    for folder in map(Path, folders):
        for group in cycles(dependencies(folder)):
            found = True
            print(f"{folder}: " + " <-> ".join(group))
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
