"""TransferNet on categories of one's own, end to end: the built-in shapes3 split (7 source
categories in a COCO-format JSON with names of its own, 3 target classes given as CSV tags)
through its spec, `make models SPEC=`'s run folder, stages 0-2 with the real `caffe train`,
tools/infer.py with label names and tools/eval.py by class name; and the nets, LMDBs and
caffemodels of one class table refused by another's."""

import argparse
import json
import os
import subprocess
import sys

import caffe
import pytest

from data_prep import builtin_lmdbs, spec
from python_layers import data_params
from tools import cli, generate_models
from transfernet import class_table, config, experiment, inference, nets, records, solvers, weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = {"classifier": 150, "attention": 100, "joint": 100}
SHAPES3 = ("cross", "chevron", "triangle")


@pytest.fixture(scope="module")
def shapes3(tmp_path_factory):
    """The shapes3 split, small, with its class table and LMDBs (builtin_lmdbs.BuiltinData)."""
    root = str(tmp_path_factory.mktemp("shapes3"))
    return builtin_lmdbs.ensure_lmdbs(
        root,
        config.TINY.data.resize,
        lambda line: None,
        split="shapes3",
        source_images=120,
        target_train=60,
        target_val=8,
    )


def test_the_second_split_has_its_own_class_table_and_drops_the_target_class(shapes3):
    table = shapes3.table
    assert table.target == SHAPES3 and len(table.source) == 7 and table.num_classes == 10
    assert "cross" not in table.source  # the source JSON's 'cross' is the target class
    source = records.read_meta(shapes3.sources[builtin_lmdbs.ALL_SOURCE])
    assert source["dropped"]["target_category"] > 0
    assert set(map(int, source["class_counts"])) == set(range(4, 11))
    target = records.read_meta(shapes3.target)
    assert target["split"] == "csv" and target["classes"] == {
        "1": "cross",
        "2": "chevron",
        "3": "triangle",
    }
    assert target["count"] == 60 and set(target["class_counts"]) == {"1", "2", "3"}


def test_make_models_writes_a_run_folder_for_the_table(shapes3, tmp_path):
    run = generate_models.write_spec_run(shapes3.spec.path, "tiny", str(tmp_path / "run"))
    deploy = weights.read_prototxt(
        experiment.model_file(run, "seg_deploy"), caffe.proto.caffe_pb2.NetParameter()
    )
    assert class_table.tag_of_net(deploy.name) == shapes3.table.tag
    assert list(deploy.layer[1].input_param.shape[0].dim) == [1, 10]  # label (K, T + S)
    assert class_table.read(os.path.join(run.dir, "classes.json")) == shapes3.table
    solver = weights.read_prototxt(
        experiment.solver_file(run, "classifier"), caffe.proto.caffe_pb2.SolverParameter()
    )
    assert solver.max_iter == config.TINY.schedule.stages["classifier"].max_iter


def test_a_run_gives_infer_its_nets_snapshots_and_classes(shapes3, tmp_path):
    run = generate_models.write_spec_run(shapes3.spec.path, "tiny", str(tmp_path / "run"))
    parser = argparse.ArgumentParser()
    cli.add_model_arguments(parser)
    args = cli.resolve_model_arguments(parser.parse_args(["--run", run.dir]))
    assert args.model == experiment.model_file(run, "seg_deploy")
    assert args.weights == experiment.final_snapshot(run, "joint")
    assert args.classes == os.path.join(run.dir, "classes.json")
    os.remove(args.classes)  # a demo's run has none: its target dataset's classes
    args = cli.resolve_model_arguments(parser.parse_args(["--run", run.dir]))
    assert args.classes == os.path.join(shapes3.target, "meta.json")
    assert inference.class_table(args.classes) == {1: "cross", 2: "chevron", 3: "triangle"}


def test_write_spec_run_before_the_datasets_are_built_says_so(tmp_path, shapes3):
    data = json.load(open(shapes3.spec.path))
    data["out"] = str(tmp_path / "not-built")
    path = str(tmp_path / "spec.json")
    json.dump(data, open(path, "w"))
    with pytest.raises(
        ValueError, match="its datasets are not built .*run `make data SPEC=%s`" % path
    ):
        generate_models.write_spec_run(path, "tiny", str(tmp_path / "run"))


def run_tool(*argv):
    result = subprocess.run(
        [sys.executable] + list(argv), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_stages_infer_and_eval_on_the_second_split(shapes3, tmp_path):
    table = shapes3.table
    schedule = config.TINY.schedule
    cfg = config.for_table(config.TINY, table).with_data(
        source=shapes3.sources[builtin_lmdbs.ALL_SOURCE], target=shapes3.target
    )
    cfg = cfg._replace(
        schedule=schedule._replace(
            stages={k: v._replace(max_iter=ITERATIONS[k]) for k, v in schedule.stages.items()},
            snapshot=50,
        )
    )
    run = experiment.prepare(str(tmp_path / "run"), cfg)
    class_table.write(os.path.join(run.dir, "classes.json"), table)
    for stage in solvers.STAGES:
        experiment.train(run, stage, progress=lambda line: None)
        snapshot = weights.read_caffemodel(experiment.final_snapshot(run, stage))
        assert class_table.tag_of_net(snapshot.name) == table.tag  # Caffe wrote the net's name
    val = shapes3.spec.val
    pred = str(tmp_path / "pred")
    tool = os.path.join(REPO, "tools")
    out = run_tool(
        os.path.join(tool, "infer.py"),
        "--run",
        run.dir,
        "--list",
        val.list,
        "--root",
        val.images,
        "--out",
        pred,
        "--workers",
        "0",
    )
    ids = open(val.list).read().split()
    assert "%d images: %d segmented" % (len(ids), len(ids)) in out
    out = run_tool(
        os.path.join(tool, "eval.py"),
        "--pred",
        pred,
        "--gt",
        val.masks,
        "--list",
        val.list,
        "--classes",
        os.path.join(run.dir, "classes.json"),
        "--out",
        str(tmp_path / "eval.json"),
    )
    result = json.load(open(str(tmp_path / "eval.json")))
    assert set(result["per_class"]) == {"background", "cross", "chevron", "triangle"}
    assert all(name in out for name in SHAPES3)
    named = str(tmp_path / "named")
    run_tool(
        os.path.join(tool, "infer.py"),
        "--run",
        run.dir,
        "--image",
        os.path.join(val.images, ids[0] + ".jpg"),
        "--labels",
        "triangle,cross",
        "--out",
        named,
    )
    assert os.path.isfile(os.path.join(named, ids[0] + ".png"))
    out = run_tool(os.path.join(tool, "ablate.py"), run.dir, "--spec", shapes3.spec.path)
    ablations = json.load(open(os.path.join(run.dir, "ablations.json")))
    assert set(ablations) == {"uniform_attention", "swapped_labels"}
    assert ablations["uniform_attention"]["images"] == len(ids) and "uniform_attention" in out

    # The joint snapshot in nets of another table: refused by name, naming both tables.
    other = class_table.make("other", ("a", "b", "c"), [n + "2" for n in table.source])
    deploy = str(tmp_path / "other_deploy.prototxt")
    with open(deploy, "w") as f:
        f.write(str(nets.seg_deploy(config.for_table(config.TINY, other))))
    with pytest.raises(weights.WeightsError) as error:
        inference.load_net(deploy, experiment.final_snapshot(run, "joint"))
    message = str(error.value)
    assert "was trained for the class table shapes3 (3 target + 7 source classes" in message
    assert "is for the class table other (3 target + 7 source classes" in message
    with pytest.raises(weights.WeightsError, match="is for the class table coco60-voc20"):
        inference.load_net(
            config.TINY.layout.model("seg_deploy"), experiment.final_snapshot(run, "joint")
        )


def test_the_data_layer_refuses_an_lmdb_of_another_table(shapes3):
    param = {
        "source": shapes3.sources[builtin_lmdbs.ALL_SOURCE],
        "target": shapes3.target,
        "source_fraction": 0.5,
        "batch_size": 2,
        "resize": 138,
        "crop": 128,
        "num_classes": 10,
        "classes": "other:3+7:00000000",
    }
    with pytest.raises(
        ValueError, match="was built for the class table shapes3 .* the layer is for other"
    ):
        data_params.load_config(json.dumps(param), caffe.TRAIN, 3)
    param["classes"] = shapes3.table.tag
    assert data_params.load_config(json.dumps(param), caffe.TRAIN, 3)["num_classes"] == 10
    assert spec.table_path(shapes3.spec) == os.path.join(
        os.path.dirname(shapes3.target), "classes.json"
    )
