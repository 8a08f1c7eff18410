"""Imports point one way: tools -> orchestration -> library (transfernet/) -> I/O.

Read from the source with ast (every import, also those inside functions), nothing imported.
The Caffe layers (python_layers/, loaded by Caffe under their bare module names) and the
dataset builders (data_prep/) use the library; the library never uses them, nor the bench,
nor the tools. The bench (benchmarks/) uses the library, the builders and the layers, and no tool;
nothing but the tools uses the bench.
The I/O layer (transfernet/fileio.py over transfernet/atomic.py) uses no other project module.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER_MODULES = sorted(
    n[: -len(".py")] for n in os.listdir(os.path.join(REPO, "python_layers")) if n.endswith(".py")
)
PACKAGES = {"transfernet", "data_prep", "tools", "python_layers", "benchmarks"}
# What the bench may import: itself, the library, the builders and the Caffe layers.
BENCH_USES = {"benchmarks", "transfernet", "data_prep", "python_layers"} | set(LAYER_MODULES)
PROJECT = PACKAGES | set(LAYER_MODULES)


def modules(folder):
    return sorted(
        os.path.join(folder, n) for n in os.listdir(os.path.join(REPO, folder)) if n.endswith(".py")
    )


def project_imports(path):
    """Project modules a source file imports: 'transfernet.score', 'data_layer', ..."""
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # `from transfernet import score` imports the module transfernet.score
            names.update(
                "%s.%s" % (node.module, alias.name)
                for alias in node.names
                if node.module in PACKAGES
            )
    return {n for n in names if n.split(".")[0] in PROJECT}


def test_the_checker_sees_every_kind_of_import(tmp_path):
    assert project_imports("tools/bench.py") >= {"benchmarks.measure", "transfernet.interrupt"}
    assert project_imports("benchmarks/pipeline.py") >= {"data_prep.coco"}
    assert "data_layer" in project_imports("benchmarks/caffe_nets.py")
    assert "transfernet.records" in project_imports("python_layers/data_params.py")
    inside = tmp_path / "inside.py"
    inside.write_text("def f():\n    from transfernet import nets\n")
    assert project_imports(str(inside)) == {"transfernet", "transfernet.nets"}


@pytest.mark.parametrize("path", modules("transfernet"))
def test_the_library_imports_no_builder_layer_or_tool(path):
    bad = {
        n
        for n in project_imports(path)
        if n.split(".")[0]
        in {"data_prep", "python_layers", "tools", "benchmarks"} | set(LAYER_MODULES)
    }
    assert not bad, "%s imports %s" % (path, ", ".join(sorted(bad)))


@pytest.mark.parametrize("path", modules("data_prep") + modules("python_layers"))
def test_builders_and_layers_import_no_bench_or_tool(path):
    bad = {n for n in project_imports(path) if n.split(".")[0] in {"benchmarks", "tools"}}
    assert not bad, "%s imports %s" % (path, ", ".join(sorted(bad)))


@pytest.mark.parametrize("path", modules("benchmarks"))
def test_the_bench_imports_the_library_builders_and_layers_only(path):
    bad = {n for n in project_imports(path) if n.split(".")[0] not in BENCH_USES}
    assert not bad, "%s imports %s" % (path, ", ".join(sorted(bad)))


def test_the_io_layer_imports_no_other_project_module():
    assert project_imports("transfernet/atomic.py") == set()
    assert project_imports("transfernet/fileio.py") <= {"transfernet", "transfernet.atomic"}
