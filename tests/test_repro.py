"""make repro-mini: the run plan and its resume, shared stages, results.json, the Table-1 and
Figure-4 writers (transfernet/repro.py, tools/repro_mini.py) on fixed inputs."""

import importlib.util
import json
import os
import struct
import sys

import pytest

from transfernet import config, evaluation, experiment, repro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "repro_mini", os.path.join(ROOT, "tools", "repro_mini.py")
)
repro_mini = importlib.util.module_from_spec(_spec)
sys.modules["repro_mini"] = repro_mini  # run_parallel pickles repro_mini.execute by name
_spec.loader.exec_module(repro_mini)

CLASSES = {0: "background", 16: "pottedplant", 1: "aeroplane", 3: "bird"}


def _eval(mean, **per_class):
    return {"mean_iou": mean, "per_class": per_class}


def _result(spec, mean, gt_mean=None):
    evaluations = {
        "predicted": _eval(mean, background=0.9, aeroplane=mean, bird=None, pottedplant=0.1)
    }
    if "gt" in spec.labels:
        evaluations["gt"] = _eval(
            gt_mean, background=0.95, aeroplane=0.7, bird=0.5, pottedplant=0.2
        )
    return repro.run_result(spec, evaluations, seconds=1.5)


def _fixed_results(seed=0):
    """A finished result for every run of the plan: ratio r, seed s -> mIoU r / 2 + s / 100."""
    specs = repro.plan(seed)
    means = {"baselinenet": 0.3, "decouplednet": 0.2}
    return [_result(s, means.get(s.method, s.ratio / 2 + s.seed / 100), gt_mean=0.6) for s in specs]


def test_plan_runs_subsets_and_order():
    specs = repro.plan(seed=3)
    names = [s.name for s in specs]
    assert names[:9] == [
        "transfernet_r100_s3",
        "baselinenet_s3",
        "baselinenet_s4",
        "baselinenet_s5",
        "decouplednet_s3",
        "decouplednet_s4",
        "decouplednet_s5",
        "transfernet_r100_s4",
        "transfernet_r100_s5",
    ]
    assert names[9:] == [
        "transfernet_r%03d_s%d" % (r, k) for r in (50, 25, 10, 5, 1) for k in (3, 4, 5)
    ]  # Figure 4: 6 ratios x 3 subsets
    assert repro.RATIOS == (1.0, 0.5, 0.25, 0.1, 0.05, 0.01) and repro.SUBSETS == 3
    # TransferNet-GT and the ablations (ground-truth labels) at 100 %, every seed and baseline
    assert all(s.labels == ("predicted", "gt") for s in specs[:9])
    assert all(s.labels == ("predicted",) for s in specs[9:])
    assert [(s.method, s.ratio, s.seed) for s in specs[1:7:3]] == [
        ("baselinenet", 1.0, 3),
        ("decouplednet", 1.0, 3),
    ]
    for ratio in repro.RATIOS:
        seeds = [s.seed for s in specs if s.method == "transfernet" and s.ratio == ratio]
        assert seeds == [3, 4, 5]
    assert [s.name for s in repro.plan(0, ratios=(1.0, 0.5), subsets=3)][7:] == [
        "transfernet_r100_s1",
        "transfernet_r100_s2",
        "transfernet_r050_s0",
        "transfernet_r050_s1",
        "transfernet_r050_s2",
    ]
    with pytest.raises(ValueError, match="1.0"):
        repro.plan(0, ratios=(0.5,))


def test_pending_skips_finished_runs_and_redoes_mismatched_ones(tmp_path):
    out = str(tmp_path)
    specs = repro.plan(0)
    assert repro.pending(out, specs) == specs
    finished = {"transfernet_r100_s0", "decouplednet_s0", "transfernet_r025_s1"}
    for spec in specs:
        if spec.name in finished:
            repro.write_run_result(out, spec, _result(spec, 0.4, 0.5))
    # a result.json written for another seed (an older plan) does not count as finished
    stale = specs[7]._replace(seed=7)
    repro.write_run_result(out, specs[7], _result(stale, 0.4))
    # a run folder with training output but no result.json is not finished either
    os.makedirs(os.path.join(out, "baselinenet_s0", "snapshots", "joint"))
    todo = repro.pending(out, specs)
    assert [s.name for s in todo] == [s.name for s in specs if s.name not in finished]
    assert repro.read_result(out, specs[0])["labels"]["gt"]["mean_iou"] == 0.5
    assert repro.read_result(out, specs[7]) is None


def test_share_stages_links_the_base_runs_snapshots(tmp_path):
    cfg = config.MINI
    base = experiment.prepare(str(tmp_path / "base"), cfg, 0)
    run = experiment.prepare(
        str(tmp_path / "ratio"), cfg.with_data(source="data/builtin-mini/lmdb/source_r050_s1"), 1
    )
    for i, stage in enumerate(("classifier", "attention")):
        with open(experiment.final_snapshot(base, stage), "wb") as f:
            f.write(b"weights %d" % i)
        os.makedirs(os.path.dirname(experiment.log_file(base, stage)), exist_ok=True)
        with open(experiment.log_file(base, stage, ".json"), "w") as f:
            json.dump(
                {
                    "seconds": 10.0 + i,
                    "iterations": 5,
                    "snapshot": experiment.final_snapshot(base, stage),
                },
                f,
            )
    assert experiment.stage_done(run, "attention") is None
    experiment.share_stages(base, run, ("classifier", "attention"))
    for stage in ("classifier", "attention"):
        done = experiment.stage_done(run, stage)
        assert done["shared_from"] == base.dir
        assert done["snapshot"] == experiment.final_snapshot(run, stage)
        assert os.path.samefile(
            experiment.final_snapshot(run, stage), experiment.final_snapshot(base, stage)
        )
    assert experiment.stage_done(run, "attention")["seconds"] == 11.0
    assert experiment.stage_done(run, "joint") is None  # the joint stage is the run's own
    with pytest.raises(RuntimeError, match="joint"):
        experiment.share_stages(base, run, ("joint",))


def test_run_parallel_reraises_a_failed_run_and_records_nothing(tmp_path):
    """Runs of the plan in forked workers whose shared stages were never trained: each
    fails in share_stages; the error reaches the caller, nothing is recorded."""
    cfg = config.MINI
    out = str(tmp_path)
    specs = repro.plan(0)
    base = experiment.prepare(os.path.join(out, specs[0].name), cfg, 0)
    sources = {spec.name: cfg.data.source for spec in specs}
    jobs = [(spec, base, out, cfg, sources, {}) for spec in specs[1:4]]
    recorded = []
    with pytest.raises(RuntimeError, match="stage classifier of the shared run .* is not finished"):
        repro_mini.run_parallel(jobs, 2, recorded.append)
    assert recorded == []
    assert repro.pending(out, specs) == specs


def test_collect_methods_and_ratio_study():
    collected = repro.collect(_fixed_results())
    methods = collected["methods"]
    assert sorted(methods) == sorted(t for t, _, _ in repro.TABLE_ROWS)
    assert methods["TransferNet"]["mean_iou"] == 0.5
    assert methods["TransferNet"]["run"] == "transfernet_r100_s0"  # first seed, not s1
    assert methods["TransferNet-GT"]["mean_iou"] == 0.6
    assert methods["TransferNet-GT"]["per_class"]["bird"] == 0.5
    assert methods["BaselineNet"]["mean_iou"] == 0.3
    assert methods["DecoupledNet-dagger"]["seed"] == 0
    study = collected["ratio_study"]
    assert sorted(study, key=float) == ["0.01", "0.05", "0.1", "0.25", "0.5", "1"]
    half = study["0.5"]
    assert half["mean_iou"] == pytest.approx(0.26)  # 0.25, 0.26 and 0.27
    assert half["std"] == pytest.approx(0.01 * (2 / 3) ** 0.5)
    assert (half["min"], half["max"]) == (pytest.approx(0.25), pytest.approx(0.27))
    assert [r["seed"] for r in half["runs"]] == [0, 1, 2]
    assert half["runs"][1]["run"] == "transfernet_r050_s1"
    partial = repro.collect(_fixed_results()[:3])
    assert "TransferNet-GT" in partial["methods"] and list(partial["ratio_study"]) == ["1"]


def test_table_markdown_values_order_and_na():
    methods = repro.collect(_fixed_results())["methods"]
    del methods["BaselineNet"]
    lines = repro.table_markdown(methods, CLASSES).splitlines()
    assert lines[0] == "| method | bkg | aero | bird | plant | mean |"  # paper order
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| TransferNet",
        "| TransferNet-GT",
        "| BaselineNet",
        "| DecoupledNet-dagger",
    ]
    assert lines[2] == "| TransferNet | 90.0 | 50.0 | n/a | 10.0 | 50.0 |"
    assert lines[3] == "| TransferNet-GT | 95.0 | 70.0 | 50.0 | 20.0 | 60.0 |"
    assert lines[4] == "| BaselineNet | n/a | n/a | n/a | n/a | n/a |"
    assert lines[5] == "| DecoupledNet-dagger | 90.0 | 20.0 | n/a | 10.0 | 20.0 |"


def test_paper_markdown_restricts_table1():
    lines = repro.paper_markdown({0: "background", 1: "aeroplane", 16: "pottedplant"})
    lines = lines.splitlines()
    assert lines[0].startswith("| method (paper, VOC 2012 val) | bkg | aero | plant |")
    assert lines[2] == "| TransferNet | 85.3 | 68.5 | 25.5 | 59.8 | 52.1 |"
    assert lines[5] == "| DecoupledNet-dagger | 79.2 | 13.1 | 4.5 | 32.3 | 25.4 |"
    assert all(len(v) == len(repro.PAPER_COLUMNS) + 1 for v in repro.PAPER_TABLE1.values())


def test_ratio_markdown_rows():
    lines = repro.ratio_markdown(repro.collect(_fixed_results())["ratio_study"]).splitlines()
    assert lines[2] == "| 100 % | 3 | 51.0 | 0.8 | 50.0 | 52.0 | 0: 50.0, 1: 51.0, 2: 52.0 |"
    assert lines[5].startswith("| 10 % | 3 | 6.0 |")
    assert lines[7].startswith("| 1 % | 3 | 1.5 |")


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plot_ratio_writes_the_png(tmp_path):
    study = repro.collect(_fixed_results())["ratio_study"]
    path = str(tmp_path / "fig" / "ratio.png")
    repro.plot_ratio(path, study, {"BaselineNet": 0.3, "DecoupledNet-dagger": None})
    assert _png_size(path) == (640, 400)
    assert os.path.getsize(path) > 10000
    assert os.listdir(str(tmp_path / "fig")) == ["ratio.png"]  # no temporary left


def test_write_outputs_results_json_schema(tmp_path):
    out = str(tmp_path)
    base = experiment.Run(os.path.join(out, "transfernet_r100_s0"), config.MINI, 0)
    val = evaluation.EvalSet(
        ids=["a", "b"], image_dir=None, gt_dir=None, candidates=None, classes=CLASSES
    )
    extra = {
        "wall_seconds": 12.0,
        "label_accuracy": {"exact": 0.5, "precision": 0.75, "recall": 1.0, "images": 2},
    }
    repro_mini.write_outputs(out, config.MINI, 0, _fixed_results(), val, base, extra)
    with open(os.path.join(out, "results.json")) as f:
        doc = json.load(f)
    assert sorted(doc) == [
        "ablations",
        "attention",
        "claims",
        "classes",
        "config",
        "dataset",
        "label_accuracy",
        "methods",
        "ratio_study",
        "ratios",
        "seed",
        "shared_stages",
        "subsets",
        "wall_seconds",
    ]
    assert doc["config"]["name"] == "mini" and doc["config"]["crop"] == 128
    assert doc["config"]["feature_scale"] == config.MINI.architecture.feature_scale
    assert doc["classes"] == {"0": "background", "1": "aeroplane", "3": "bird", "16": "pottedplant"}
    for title, row in doc["methods"].items():
        assert sorted(row) == ["mean_iou", "per_class", "run", "seed"], title
        assert sorted(row["per_class"]) == sorted(CLASSES.values())
    for ratio, st in doc["ratio_study"].items():
        assert float(ratio) in repro.RATIOS
        assert sorted(st) == ["max", "mean_iou", "min", "runs", "std"]
        assert len(st["runs"]) == repro.SUBSETS
        assert all(sorted(r) == ["mean_iou", "per_class", "run", "seed"] for r in st["runs"])
    assert doc["ratios"] == [1.0, 0.5, 0.25, 0.1, 0.05, 0.01] and doc["subsets"] == 3
    assert sorted(os.listdir(out)) == ["ratio.png", "report.md", "results.json", "table.md"]
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    assert repro.table_markdown(doc["methods"], CLASSES) in report
    assert "| TransferNet | 85.3 | 68.5 | 69.8 | 25.5 |" in report
    assert "exact set 50.0 %" in report


def _solver_fields(run, stage):
    with open(experiment.solver_file(run, stage)) as f:
        lines = [line.split(": ", 1) for line in f if not line.startswith("#")]
    return {k.strip(): v.strip().strip('"') for k, v in lines if k.strip() in ("net", "weights")}


def test_baseline_run_starts_from_stage0_and_infers_with_its_deploy_net(tmp_path, builtin_lmdbs):
    import caffe

    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    plain = experiment.prepare(str(tmp_path / "transfernet"), cfg, 0)
    assert _solver_fields(plain, "joint") == {
        "net": experiment.model_file(plain, "joint_train"),
        "weights": experiment.final_snapshot(plain, "attention"),
    }
    with open(os.path.join(plain.dir, "config.json")) as f:
        assert "baseline" not in json.load(f)
    run = experiment.prepare(str(tmp_path / "run"), cfg, 0, baseline="decouplednet")
    assert _solver_fields(run, "joint") == {
        "net": experiment.model_file(run, "decouplednet_train"),
        "weights": experiment.final_snapshot(run, "classifier"),
    }
    assert experiment.deploy_net(run) == "decouplednet_deploy"
    fcn = experiment.prepare(str(tmp_path / "fcn"), cfg, 0, baseline="baselinenet")
    assert _solver_fields(fcn, "joint")["weights"] == experiment.final_snapshot(
        fcn, "classifier"
    ).replace(".caffemodel", "_fcn.caffemodel")
    with pytest.raises(ValueError, match="baseline"):
        experiment.prepare(run.dir, cfg, 0, baseline="baselinenet")
    with pytest.raises(ValueError, match="unknown baseline"):
        experiment.prepare(str(tmp_path / "other"), cfg, 0, baseline="fcn")
    weights = str(tmp_path / "init.caffemodel")
    caffe.Net(experiment.model_file(run, "decouplednet_deploy"), caffe.TEST).save(weights)
    voc_root = os.path.join(os.path.dirname(os.path.dirname(source)), "VOCdevkit", "VOC2012")
    val = evaluation.voc_eval_set(voc_root, target)
    val = val._replace(ids=val.ids[:2])
    ids = val.ids
    folders = evaluation.infer(
        run,
        val,
        label_sources=("gt",),
        weights=weights,
        progress=lambda message: None,
        methods=("decoder",),
    )
    assert list(folders) == [("gt", "decoder")]
    assert sorted(os.listdir(folders["gt", "decoder"])) == sorted(i + ".png" for i in ids)
    assert sorted(os.listdir(os.path.join(run.dir, "pred"))) == ["gt_decoder", "labels_gt.json"]


def _power_scales(path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    proto = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), proto)
    return [
        layer.power_param.scale
        for layer in proto.layer
        if layer.name in ("data_scaled", "conv5_3_scaled")
    ]


def _scaled(cfg, **scales):
    """The config with another input_scale and/or feature_scale (its architecture's)."""
    return cfg._replace(architecture=cfg.architecture._replace(**scales))


def test_config_scales_reach_every_net_and_config(tmp_path):
    cfg = _scaled(config.MINI, input_scale=0.25, feature_scale=7.0)
    run = experiment.prepare(str(tmp_path / "b"), cfg, 0, baseline="baselinenet")
    for net in ("attention_train", "joint_train", "seg_deploy"):  # data_scaled, conv5_3_scaled
        assert _power_scales(experiment.model_file(run, net)) == [0.25, 7.0], net
    # BaselineNet's head is the classifier's: on pool5 of the unscaled conv5_3
    for net in ("classifier_train", "classifier_deploy", "baselinenet_train", "baselinenet_deploy"):
        assert _power_scales(experiment.model_file(run, net)) == [0.25], net
    with open(os.path.join(run.dir, "config.json")) as f:
        assert json.load(f)["feature_scale"] == 7.0
    unscaled = experiment.prepare(str(tmp_path / "u"), _scaled(cfg, input_scale=1), 0)
    assert _power_scales(experiment.model_file(unscaled, "seg_deploy")) == [7.0]
    with pytest.raises(ValueError, match="feature_scale"):
        experiment.prepare(run.dir, _scaled(cfg, feature_scale=1.0), 0, baseline="baselinenet")


def test_claims_verdicts_over_seeds_and_subsets():
    rows = {r["claim"].split(" (")[0]: r for r in repro.claims(_fixed_results())}
    first = rows["TransferNet > BaselineNet"]
    assert first["higher"] == pytest.approx([0.5, 0.51, 0.52]) and first["lower"] == [0.3] * 3
    assert first["verdict"] == "reproduced"
    gt = rows["TransferNet-GT >= TransferNet"]  # GT 0.6 against 0.5, 0.51, 0.52: per seed
    assert gt["higher"] == pytest.approx([0.08, 0.09, 0.1]) and gt["verdict"] == "reproduced"
    assert rows["BaselineNet > DecoupledNet-dagger"]["verdict"] == "reproduced"
    decline = rows["100 % of the source masks > 1 %"]
    assert decline["lower"] == pytest.approx([0.005, 0.015, 0.025])
    assert repro._verdict([0.4, 0.5], [0.45]) == "within the spread"
    assert repro._verdict([0.4, 0.5], [0.55, 0.6]) == "reversed"
    assert repro._verdict([], [0.3]) is None
    table = repro.claims_markdown(repro.claims(_fixed_results()))
    row = (
        "| TransferNet > BaselineNet (Sec. 6.3) | 50.0, 51.0, 52.0 "
        "| 30.0, 30.0, 30.0 | reproduced |"
    )
    assert row in table


def test_ablation_rows_are_intact_minus_ablated_of_the_first_seed_run():
    results = _fixed_results()

    def scores(mean, aero):
        return {"mean_iou": mean, "per_class": dict(background=0.9, aeroplane=aero, bird=None)}

    for r in results:
        if r["name"] == "transfernet_r100_s0":
            r["ablations"] = {
                "uniform_attention": {
                    "images": 2,
                    "intact": scores(0.6, 0.7),
                    "ablated": scores(0.4, 0.2),
                }
            }
        if r["name"] == "transfernet_r100_s1":  # not the first seed: left out
            r["ablations"] = {
                "swapped_labels": {"images": 1, "intact": scores(1, 1), "ablated": scores(0, 0)}
            }
    rows = repro.ablation_differences(results)
    assert list(rows) == [repro.ABLATION_ROWS[0][0]]
    row = rows[repro.ABLATION_ROWS[0][0]]
    assert row["mean_iou"] == pytest.approx(0.2) and row["run"] == "transfernet_r100_s0"
    assert row["per_class"]["aeroplane"] == pytest.approx(0.5) and row["per_class"]["bird"] is None
    table = repro.table_markdown(repro.collect(results)["methods"], CLASSES, rows)
    assert (
        "| what the attention adds (GT labels, minus uniform attention) | +0.0 | +50.0 | n/a |"
        in table
    )


def test_attention_table_has_a_row_per_transfernet_run():
    results = _fixed_results()
    measures = dict(pointing=0.5, inside=0.25, inside_uniform=0.1, own=0.75, own_uniform=0.45)
    for r in results:
        if r["method"] == repro.TRANSFERNET:
            r["attention"] = measures
    table = repro.attention_markdown(results, dict(measures, pointing=0.125))
    lines = table.splitlines()
    assert lines[2] == "| stage 1 (shared) | 0.125 | 0.250 | 0.750 |"
    assert "| transfernet_r100_s0 (ratio 1, seed 0) | 0.500 | 0.250 | 0.750 |" in lines
    assert lines[-2] == "| uniform attention | - | 0.100 | 0.450 |"
    assert lines[-1] == "| the best cell (pointing's ceiling) | n/a | - | - |"  # not measured
    assert len(lines) == 2 + 1 + 18 + 2  # header, stage 1, 18 TransferNet runs, uniform, ceiling
