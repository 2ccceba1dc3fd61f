"""python/fastlrp/_core.pyi against the compiled module: every stubbed name exists, and every
method of the bound network and graph classes is stubbed (so the stubs cannot fall behind)."""

import ast
from pathlib import Path

import fastlrp
from fastlrp._native import core

STUBS = Path(fastlrp.__file__).with_name("_core.pyi")


def stub_tree():
    tree = ast.parse(STUBS.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    return funcs, classes


def members(cls_node, classes):
    names = set()
    for base in cls_node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            names |= members(classes[base.id], classes)
    for item in cls_node.body:
        if isinstance(item, ast.FunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    return names


def test_stubbed_functions_exist():
    funcs, _ = stub_tree()
    assert funcs
    for name in funcs:
        assert callable(getattr(core, name)), name


def test_stubbed_classes_match_the_module():
    _, classes = stub_tree()
    for name, node in classes.items():
        if name.startswith("_"):
            continue
        real = getattr(core, name)
        stubbed = members(node, classes) - {"__init__"}
        for m in stubbed:
            assert hasattr(real, m), f"{name}.{m} is stubbed but not bound"
        if name.startswith(("Network_", "Graph_")):
            bound = {m for m in vars(real) | vars(real.__mro__[0]) if not m.startswith("_")}
            assert bound - stubbed == set(), f"{name}: bound but not stubbed: {sorted(bound - stubbed)}"
