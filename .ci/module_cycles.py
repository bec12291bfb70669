#!/usr/bin/env python3
"""Prints the import graph of the crate's top-level modules and fails on any cycle.

A module's imports are every `crate::NAME` path in its files (use lines and inline paths),
where NAME is another top-level module of src/lib.rs; unit tests (a `#[cfg(test)]` module,
inline or in a file of its own) are left out, as they are not part of the build's graph.
Run from the repository root:
`python3 .ci/module_cycles.py`; exit 1 when a cycle exists.
"""
import pathlib
import re
import sys

SRC = pathlib.Path("src")


def top_level_modules():
    lib = (SRC / "lib.rs").read_text()
    return re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", lib, re.M)


def test_only_files():
    """Files of modules declared under `#[cfg(test)]` (`mod name;`)."""
    found = set()
    for path in SRC.rglob("*.rs"):
        text = path.read_text()
        for name in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            folder = path.parent if path.name in ("mod.rs", "lib.rs") else path.with_suffix("")
            found.add(folder / f"{name}.rs")
    return found


def files_of(module):
    files = []
    single = SRC / f"{module}.rs"
    if single.exists():
        files.append(single)
    folder = SRC / module
    if folder.is_dir():
        files.extend(sorted(folder.rglob("*.rs")))
    return files


def code_of(path):
    """The file's text without comments and without its inline `#[cfg(test)] mod` block."""
    text = path.read_text()
    test_module = re.search(r"^#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text, re.M)
    if test_module:
        text = text[: test_module.start()]
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def imports(module, modules):
    found = set()
    skip = test_only_files()
    for path in files_of(module):
        if path in skip:
            continue
        text = code_of(path)
        # `use crate::{a, b::c}` groups as well as plain paths.
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            found.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        found.update(re.findall(r"crate::(\w+)", text))
    return sorted(name for name in found if name in modules and name != module)


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return out


def main():
    modules = top_level_modules()
    graph = {module: imports(module, set(modules)) for module in modules}
    for module in modules:
        print(f"{module:10} -> {', '.join(graph[module]) or '-'}")
    found = cycles(graph)
    for component in found:
        print("cycle: " + " <-> ".join(component), file=sys.stderr)
    if not found:
        print("no import cycle between the crate's modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
