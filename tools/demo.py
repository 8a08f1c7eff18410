#!/usr/bin/env python3
"""End-to-end TransferNet demo on the built-in dataset with the tiny networks (`make demo`).

    python3 tools/demo.py [--run runs/demo] [--data data/builtin] [--seed 0] [--force]
                          [--joint-seeds 1,2] [--split shapes3]

1. generates the built-in dataset and its source/target LMDBs (data_prep.builtin_lmdbs) at
   the tiny config's record size, unless they are current;
2. trains stage 0 (multi-label classifier), stage 1 (attention, Eq. 6) and stage 2 (joint,
   Eq. 9) with the real `caffe train` CLI (logs in RUN/logs/);
3. segments the VOC-style val images with predicted labels and with ground-truth labels
   (TransferNet-GT), with and without dense CRF, and by the no-transfer rule (thresholded
   densified attention s, transfernet.no_transfer);
4. scores each on background + the target classes present (comp6) and writes
   RUN/report.md and RUN/metrics.json;
5. with --joint-seeds, retrains the joint stage from the same stages 0 and 1 with each other
   seed (RUN/joint_seed<N>/) and reports TransferNet vs no transfer for every seed.
Finished stages and inferences are reused (resume) unless --force. Progress on stderr. A
stage that fails is one error with the end of caffe's log and its path (exit status 1);
Ctrl-C stops with one line naming the finished stages (exit status 130).
"""

import argparse
import os
import shutil
import sys
import time

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported
# One BLAS thread trains the tiny nets as fast as two (400 stage-0 iterations: 40 s either way
# on 2 cores) and leaves the other core free.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from data_prep import builtin, builtin_lmdbs  # noqa: E402
from transfernet import (  # noqa: E402
    attention_figures,
    config,
    evaluation,
    experiment,
    inference,
    interrupt,
    no_transfer,
    reports,
    solvers,
)
from transfernet.fileio import read_image  # noqa: E402

FIGURES = 4  # example figures in the report: the first val images with two or more classes
RESUME = "run the same command again to resume (finished stages and segmented images are reused)"


log = experiment.timestamped_log("demo")


def seed_list(text):
    """'1,2' -> [1, 2] (argparse type of --joint-seeds)."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected comma-separated integer seeds like 1,2, got %r" % text
        )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--split",
        default="paper",
        choices=builtin.SPLITS,
        help="the built-in dataset's split: paper (COCO-60 -> VOC-20 class table, default) or "
        "shapes3 (7 source categories -> 3 target classes given as CSV tags)",
    )
    parser.add_argument("--run", help="run folder (default runs/demo, runs/demo-<split>)")
    parser.add_argument(
        "--data", help="built-in dataset folder (default data/builtin, data/builtin-<split>)"
    )
    parser.add_argument("--config", default="tiny", choices=sorted(config.CONFIGS))
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset, data layer and solver seed (default 0)"
    )
    parser.add_argument(
        "--force", action="store_true", help="remove the run folder first (retrain, re-infer)"
    )
    parser.add_argument("--workers", type=int, default=2, help="dataset build processes")
    parser.add_argument(
        "--joint-seeds",
        type=seed_list,
        default=[],
        help="comma-separated seeds of extra joint-stage runs from the same "
        "stages 0 and 1 (e.g. 1,2): the seed spread of the transfer",
    )
    args = parser.parse_args(argv)
    suffix = "" if args.split == "paper" else "-" + args.split
    args.run = args.run or "runs/demo" + suffix
    args.data = args.data or "data/builtin" + suffix
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    run = None
    try:
        import caffe

        caffe.set_mode_cpu()
        cfg = config.CONFIGS[args.config]
        data = builtin_lmdbs.ensure_lmdbs(
            args.data,
            cfg.data.resize,
            log,
            seed=args.seed,
            workers=args.workers,
            split=args.split,
        )
        source = data.sources[builtin_lmdbs.ALL_SOURCE]
        if args.force and os.path.exists(args.run):
            shutil.rmtree(args.run)
        cfg = config.for_table(cfg, data.table).with_data(source=source, target=data.target)
        run = experiment.prepare(args.run, cfg, args.seed)
        train_and_report(run, data, args.joint_seeds, start)
    except KeyboardInterrupt:
        stages = experiment.finished_stages(run) if run else []
        raise interrupt.Interrupted(
            "stages finished in %s: %s" % (args.run, ", ".join(stages) or "none")
        ) from None
    except (experiment.TrainingError, OSError, ValueError) as e:
        print("demo.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


def train_and_report(run, data, seeds, start):
    """Steps 2-5 of the module docstring in the prepared Run; `data`: the built-in dataset
    (builtin_lmdbs.BuiltinData), `seeds`: --joint-seeds."""
    source, target = run.cfg.data.source, data.target
    training = {stage: experiment.train(run, stage, progress=log) for stage in solvers.STAGES}
    val = evaluation.eval_set(*data.spec.val, target)
    labels = {s: evaluation.image_labels(run, val, s) for s in evaluation.LABEL_SOURCES}
    metrics = evaluate_run(run, val, training, labels)
    metrics["attention_stage1"] = evaluation.stage_attention(run, val, labels["gt"], "attention")
    metrics["attention"] = evaluation.stage_attention(run, val, labels["gt"], "joint")
    metrics["data"] = {
        "val_images": len(val.ids),
        "source": source,
        "target": target,
        "classes": {str(k): v for k, v in val.classes.items()},
    }
    metrics["joint_seeds"] = joint_seeds(run, seeds, metrics["results"], val)
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_outputs(run, val, metrics, labels["gt"])
    log(
        "wrote %s and %s (%.0f s)"
        % (
            os.path.join(run.dir, "report.md"),
            os.path.join(run.dir, "metrics.json"),
            time.time() - start,
        )
    )


def evaluate_run(run, val, training, labels):
    """Segment and score the EvalSet with both label sources ({source: {id: labels}}) and
    every method; the metrics of the report (transfernet.reports.report_markdown) but its
    "data"."""
    folders = evaluation.infer(run, val, progress=log)
    results = {key: evaluation.evaluate(folder, val) for key, folder in folders.items()}
    return {
        "config": experiment.describe(run.cfg, run.seed),
        "training": training,
        "labels": evaluation.label_accuracy(labels["predicted"], labels["gt"]),
        "results": reports.result_rows(results),
        "no_transfer": {
            "threshold": no_transfer.THRESHOLD,
            "rule": "densified attention s (Eq. 7) of the joint model, bilinear "
            "to the image, per-label min-max normalised, > threshold, "
            "labels combined by the largest score",
        },
    }


def write_outputs(run, val, metrics, gt_labels):
    """RUN/metrics.json, the example figures (with the ground-truth labels) and RUN/report.md;
    logs the main rows."""
    multi_class = [i for i in val.ids if len(gt_labels[i]) > 1]
    figures = write_figures(run, multi_class[:FIGURES], val.image_dir, gt_labels, val.classes)
    reports.write_metrics(os.path.join(run.dir, "metrics.json"), metrics)
    plots = [os.path.relpath(experiment.log_file(run, s, ".png"), run.dir) for s in solvers.STAGES]
    reports.write_report(
        os.path.join(run.dir, "report.md"),
        metrics,
        'TransferNet demo: config "%s" on the built-in dataset' % run.cfg.name,
        plots,
        figures,
    )
    for key in ("predicted_decoder", "predicted_no_transfer", "gt_decoder", "gt_no_transfer"):
        row = metrics["results"][key]
        log("%-32s mIoU %.1f" % (row["title"], 100 * row["mean_iou"]))


def joint_seeds(run, seeds, results, val):
    """{seed: {row key: mIoU}} of TransferNet and no transfer (predicted and ground-truth
    labels) for the run's own seed (`results`) and each of `seeds`, whose joint stage is
    trained in RUN/joint_seed<N>/ from the run's stages 0 and 1."""
    keys = [
        reports.row_key(s, m) for s in evaluation.LABEL_SOURCES for m in ("decoder", "no_transfer")
    ]
    out = {str(run.seed): {k: results[k]["mean_iou"] for k in keys}}
    for other in seeds:
        if other == run.seed:
            continue
        sub = experiment.prepare(os.path.join(run.dir, "joint_seed%d" % other), run.cfg, other)
        experiment.share_stages(run, sub, ("classifier", "attention"))
        experiment.train(sub, "joint", progress=log)
        folders = evaluation.infer(sub, val, progress=log, methods=("decoder", "no_transfer"))
        out[str(other)] = {
            reports.row_key(*key): evaluation.evaluate(folder, val)["mean_iou"]
            for key, folder in folders.items()
        }
        log(
            "joint seed %d: TransferNet mIoU %.1f, no transfer %.1f"
            % (
                other,
                100 * out[str(other)]["predicted_decoder"],
                100 * out[str(other)]["predicted_no_transfer"],
            )
        )
    return out


def write_figures(run, ids, image_dir, gt_labels, table):
    """Example figures (attention_figures.write_figure) of `ids` with their ground-truth
    labels; returns their paths relative to the run folder."""
    net = inference.load_net(
        experiment.model_file(run, "seg_deploy"), experiment.final_snapshot(run, "joint")
    )
    paths = []
    for image_id in ids:
        path = os.path.join(run.dir, "figures", image_id + ".png")
        if not os.path.exists(path):
            image = inference.working_image(read_image(os.path.join(image_dir, image_id + ".jpg")))
            seg = inference.segment(net, image, gt_labels[image_id])
            attention_figures.write_figure(path, image, seg, table)
        paths.append(os.path.relpath(path, run.dir))
    return paths


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "demo.py", RESUME))
