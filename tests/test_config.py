"""transfernet.config: a config is four values (architecture, data, schedule, layout); a new
dataset or schedule is one new value, and the layout owns every path the generators write."""

import ast
import json
import os
import re
import subprocess
import sys
import tokenize

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from transfernet import baselines, config, experiment, nets, solvers

# Another dataset for the tiny nets: other folders, domain mix and resizes.
OTHER_DATA = config.Data(
    source="data/other/lmdb/source",
    target="data/other/lmdb/target",
    source_fraction=0.25,
    resize=144,
    classifier_resize=104,
)
# What config.json has always held: the reports and resume read these keys.
CONFIG_KEYS = [
    "classes",
    "classifier_crop",
    "classifier_init",
    "classifier_resize",
    "crop",
    "display",
    "feature_scale",
    "input_scale",
    "kernels",
    "name",
    "num_classes",
    "resize",
    "seed",
    "snapshot",
    "snapshot_dir",
    "solver_dir",
    "source",
    "source_fraction",
    "stages",
    "target",
    "width",
]


def _data_params(proto):
    """{layer name: param_str dict} of the SourceTargetData layers of a NetParameter."""
    return {
        layer.name: json.loads(layer.python_param.param_str)
        for layer in proto.layer
        if layer.type == "Python" and layer.python_param.layer == "SourceTargetData"
    }


def _without_data_params(proto):
    """The NetParameter's text with the data layers' param_str removed."""
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(proto)
    for layer in copy.layer:
        if layer.python_param.layer == "SourceTargetData":
            layer.python_param.ClearField("param_str")
    return str(copy)


def test_a_new_dataset_is_one_data_value_and_changes_only_the_data_layers():
    other = config.Config(
        "tiny", config.TINY_ARCHITECTURE, OTHER_DATA, config.TINY_SCHEDULE, config.TINY.layout
    )
    for net, build in [(n, nets.build) for n in nets.NETS] + [
        (n, baselines.build) for n in baselines.NETS
    ]:
        mine, tiny = build(other, net), build(config.TINY, net)
        assert _without_data_params(mine) == _without_data_params(tiny), net
        params = _data_params(mine)
        assert bool(params) == net.endswith("_train"), net
        for param in params.values():
            assert (param["source"], param["target"], param["source_fraction"]) == (
                OTHER_DATA.source,
                OTHER_DATA.target,
                OTHER_DATA.source_fraction,
            ), net
            assert param["resize"] == (
                OTHER_DATA.classifier_resize if net == "classifier_train" else OTHER_DATA.resize
            )
            assert param["crop"] == (
                config.TINY_ARCHITECTURE.classifier_crop
                if net == "classifier_train"
                else config.TINY_ARCHITECTURE.crop
            )
    # the solvers do not depend on the data at all
    for stage in solvers.STAGES:
        assert solvers.solver(other, stage) == solvers.solver(config.TINY, stage)


def test_a_new_schedule_is_one_schedule_value():
    short = config.Schedule(
        stages={
            k: v._replace(max_iter=7, base_lr=0.5) for k, v in config.TINY_SCHEDULE.stages.items()
        },
        snapshot=7,
        display=1,
    )
    cfg = config.TINY._replace(schedule=short)
    for stage in solvers.STAGES:
        param = solvers.solver(cfg, stage)
        assert (param.max_iter, param.base_lr, param.snapshot, param.display) == (
            7,
            0.5,
            7,
            1,
        ), stage
    assert solvers.solver(cfg, "joint").weights == [
        "snapshots/tiny/attention/attention_iter_7.caffemodel"
    ]
    assert str(nets.build(cfg, "seg_deploy")) == str(nets.build(config.TINY, "seg_deploy"))


def test_mini_is_the_tiny_recipe_on_the_larger_dataset():
    mini, tiny = config.MINI, config.TINY
    assert mini.architecture == tiny.architecture
    assert mini.data == tiny.data._replace(source=mini.data.source, target=mini.data.target)
    assert mini.data.source.startswith("data/builtin-mini/")
    assert mini.schedule.stages == tiny.schedule.stages
    assert mini.layout.model("seg_deploy") == "models/mini/seg_deploy.prototxt"


def test_committed_layout_owns_every_generated_path():
    assert config.PAPER.layout.solver("joint") == "solvers/joint.prototxt"
    assert config.TINY.layout.solver("joint") == "solvers/tiny/joint.prototxt"
    assert (
        config.TINY.layout.snapshot("joint", 2500)
        == "snapshots/tiny/joint/joint_iter_2500.caffemodel"
    )
    for cfg in config.CONFIGS.values():
        layout = cfg.layout
        for stage in solvers.STAGES:
            param = solvers.solver(cfg, stage)
            assert param.net == layout.model(solvers.STAGE_NET[stage])
            assert param.snapshot_prefix == layout.snapshot_prefix(stage)
            assert list(param.weights) == [w for w in [solvers.initial_weights(cfg, stage)] if w]
        for baseline in baselines.BASELINES:
            param = baselines.solver(cfg, baseline)
            assert param.net == layout.model(baseline + "_train")
            assert param.snapshot_prefix == layout.snapshot_prefix(baseline)
            assert param.weights[0].startswith(layout.snapshot_prefix("classifier"))


def _solver(path):
    with open(path) as f:
        return text_format.Merge(f.read(), caffe_pb2.SolverParameter())


def test_run_layout_owns_every_path_and_the_seed_reaches_the_generators(tmp_path):
    """prepare writes what the generators return for the run's layout and seed: every path in
    the run's solvers is in the run folder, none in the committed tree."""
    for baseline in (None,) + baselines.BASELINES:
        folder = str(tmp_path / str(baseline))
        run = experiment.prepare(folder, config.MINI, 5, baseline=baseline)
        layout = run.layout
        assert layout == config.Layout(
            os.path.join(folder, "models"),
            os.path.join(folder, "solvers"),
            os.path.join(folder, "snapshots"),
            None,
        )
        for stage in solvers.STAGES:
            param = _solver(layout.solver(stage))
            trains = baseline if baseline and stage == baselines.STAGE else None
            expected = (
                baselines.solver(run.cfg, trains, layout, 5, name=stage)
                if trains
                else solvers.solver(run.cfg, stage, layout, 5)
            )
            assert param == expected, (baseline, stage)
            assert param.random_seed == 5
            assert param.net == layout.model(
                trains + "_train" if trains else solvers.STAGE_NET[stage]
            )
            assert param.snapshot_prefix == layout.snapshot_prefix(stage)
            assert os.path.isdir(os.path.dirname(param.snapshot_prefix))
            for path in [param.net, param.snapshot_prefix] + list(param.weights):
                assert path.startswith(folder + os.sep), path
        for name in os.listdir(layout.models):
            with open(os.path.join(layout.models, name)) as f:
                text = f.read()
            assert "models/mini" not in text and "snapshots/mini" not in text
            net = text_format.Merge(text, caffe_pb2.NetParameter())
            assert all(p["seed"] == 5 for p in _data_params(net).values()), name


def test_config_json_keeps_its_flat_keys():
    described = experiment.describe(config.MINI, 3)
    assert sorted(described) == CONFIG_KEYS
    assert (
        described["crop"],
        described["resize"],
        described["solver_dir"],
        described["snapshot"],
        described["seed"],
    ) == (128, 138, "solvers/mini", 800, 3)
    assert described["stages"]["attention"]["max_iter"] == 3000


# Numbers that belong to a config, written nowhere else: (config, field) pairs whose values are
# distinctive enough that a literal elsewhere is a second source, not a coincidence.
SINGLE_SOURCE = (
    ("paper", "architecture.crop"),
    ("paper", "architecture.feature_scale"),
    ("paper", "data.resize"),
    ("paper", "data.classifier_resize"),
    ("tiny", "data.resize"),
    ("tiny", "data.classifier_resize"),
)
# Literals that equal one of those values but are not that setting: (file, value, why).
NOT_A_SETTING = (
    ("transfernet/authors.py", 320, "the authors' MATLAB preprocess_image size of the classifier"),
)


def _number_literals(path):
    """(line, value) of every number token of a Python file: code only, not comments or
    docstrings."""
    with open(path, encoding="utf-8") as f:
        tokens = tokenize.generate_tokens(f.readline)
        return [
            (t.start[0], float(ast.literal_eval(t.string)))
            for t in tokens
            if t.type == tokenize.NUMBER and not t.string.endswith(("j", "J"))
        ]


def _makefile_numbers(path):
    with open(path) as f:
        lines = [line.split("#", 1)[0] for line in f]
    return [
        (i + 1, float(m))
        for i, line in enumerate(lines)
        for m in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", line)
    ]


def test_config_numbers_have_one_source():
    """The sizes and scales of SINGLE_SOURCE appear as literals only in transfernet/config.py
    (tests and generated prototxts aside): the Makefile, tools, data layer and bench read them."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    values = {float(config.get(name, field)): (name, field) for name, field in SINGLE_SOURCE}
    allowed = {(path, float(value)) for path, value, _ in NOT_A_SETTING}
    found = []
    for folder in ("transfernet", "tools", "data_prep", "python_layers", "bench"):
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if not name.endswith(".py") or rel == "transfernet/config.py":
                    continue
                for line, value in _number_literals(path):
                    if value in values and (rel, value) not in allowed:
                        found.append("%s:%d: %g is %s %s" % ((rel, line, value) + values[value]))
    for line, value in _makefile_numbers(os.path.join(root, "Makefile")):
        if value in values:
            found.append("Makefile:%d: %g is %s %s" % ((line, value) + values[value]))
    assert not found, "read these from transfernet/config.py:\n" + "\n".join(found)


def test_config_get_prints_a_value_and_names_what_is_missing():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def get(*args):
        return subprocess.run(
            [sys.executable, "-m", "transfernet.config", *args],
            cwd=root,
            capture_output=True,
            text=True,
        )

    assert get("get", "tiny", "data.resize").stdout == "%d\n" % config.TINY.data.resize
    assert get("get", "mini", "data.source").stdout == config.MINI.data.source + "\n"
    both = get("get", "paper", "data.target", "architecture.crop")
    assert both.stdout == "%s\n%d\n" % (config.PAPER.data.target, config.PAPER.architecture.crop)
    missing = get("get", "tiny", "data.crop")
    assert missing.returncode == 2 and "config 'tiny' has no field 'data.crop'" in missing.stderr
    unknown = get("get", "huge", "data.resize")
    assert unknown.returncode == 2 and "no config 'huge'" in unknown.stderr
