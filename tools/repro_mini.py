#!/usr/bin/env python3
"""The paper's Table 1 and Figure 4 in miniature on the built-in dataset (`make repro-mini`).

    python3 tools/repro_mini.py [--out runs/repro-mini] [--data data/builtin-mini] [--seed 0]
                                [--jobs 2] [--plan]

1. generates the built-in dataset with transfernet.repro.DATASET's image counts and its
   LMDBs at the mini config's record size, and one source LMDB per (ratio, subset seed)
   with data_prep.coco's --ratio/--seed (lmdb/source_r050_s1, ...; data_prep.builtin_lmdbs),
   unless they are current;
2. runs transfernet.repro.plan(): stages 0 and 1 of TransferNet once (shared by every run),
   then --jobs runs at a time: the joint stage of TransferNet, BaselineNet and
   DecoupledNet-dagger (from the same stage-0 snapshot), the source-ratio runs (joint stage
   on each subset); each run segments the val images with
   predicted labels (the TransferNet 100 % run of the first seed also with ground-truth
   labels) and scores background + the target classes (comp6);
3. writes OUT/results.json, OUT/table.md (Table 1 style), OUT/ratio.png (Figure 4 style) and
   OUT/report.md.
A run with a result.json is not redone (resume); inside a run, finished stages and segmented
images are reused. --plan lists the runs and which are finished, and stops. Progress on stderr.
A failing stage is one error with the end of caffe's log and its path (exit status 1); Ctrl-C
stops every run at once with one line counting the finished runs (exit status 130).
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported
# One BLAS thread trains the mini nets as fast as two: --jobs runs share the cores instead.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from data_prep import builtin_lmdbs  # noqa: E402
from transfernet import config, evaluation, experiment, interrupt, repro  # noqa: E402
from transfernet.atomic import write_text  # noqa: E402

log = experiment.timestamped_log("repro-mini")
RESUME = "run the same command again to resume (finished runs, stages and images are reused)"


def source_subset(spec):
    """(ratio, subset seed) of the source LMDB of a run: every 100 % run has the whole one."""
    return (spec.ratio, spec.seed) if spec.ratio < 1 else builtin_lmdbs.ALL_SOURCE


def execute(spec, base, out, cfg, sources, val):
    """Train (or reuse) and evaluate one run of the plan; returns its result (run_result)."""
    start = time.time()

    def progress(message):
        log("%s: %s" % (spec.name, message))

    baseline = None if spec.method == repro.TRANSFERNET else spec.method
    run = experiment.prepare(
        os.path.join(out, spec.name),
        cfg.with_data(source=sources[spec.name]),
        spec.seed,
        baseline=baseline,
    )
    if run.dir != base.dir:
        experiment.share_stages(
            base, run, ("classifier",) if baseline else ("classifier", "attention")
        )
    for stage in ("classifier", "joint") if baseline else ("classifier", "attention", "joint"):
        experiment.train(run, stage, progress=progress)
    folders = evaluation.infer(
        run, val, label_sources=spec.labels, progress=progress, methods=("decoder",)
    )
    evaluations = {
        source: evaluation.evaluate(folders[source, "decoder"], val) for source in spec.labels
    }
    gt = evaluation.image_labels(run, val, "gt")
    attention = None if baseline else evaluation.stage_attention(run, val, gt)
    ablations = evaluation.ablate(run, val, progress) if spec.ratio == 1.0 else None
    result = repro.run_result(
        spec, evaluations, round(time.time() - start, 1), attention, ablations
    )
    repro.write_run_result(out, spec, result)
    log(
        "%s: %s"
        % (
            spec.name,
            ", ".join(
                "%s labels mIoU %.1f" % (s, 100 * r["mean_iou"])
                for s, r in sorted(result["labels"].items())
            ),
        )
    )
    return result


def run_parallel(jobs, processes, record):
    """execute() the jobs in `processes` forked workers, record() each result as it comes.

    With one BLAS thread per caffe train (OPENBLAS_NUM_THREADS=1, set at start-up), two runs at
    once finish about twice as fast as one after the other. After a failure no new run starts;
    the runs in flight finish, then the first error is raised."""
    errors = []
    with concurrent.futures.ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=interrupt.ignore_in_worker,
    ) as pool:
        futures = {pool.submit(execute, *job): job[0].name for job in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                try:
                    record(future.result())
                except Exception as error:  # noqa: BLE001 (reported, then re-raised below)
                    log("%s failed: %s" % (futures[future], error))
                    errors.append(error)
                    for other in futures:
                        other.cancel()
        except KeyboardInterrupt:
            interrupt.stop_workers()  # the pool would wait for the runs to finish
            raise
    if errors:
        raise errors[0]


def write_outputs(out, cfg, seed, results, val, base, extra):
    """results.json, table.md, ratio.png and report.md of the finished runs."""
    collected = repro.collect(results)
    document = results_document(cfg, seed, results, collected, val, base, extra)
    write_text(
        os.path.join(out, "results.json"), json.dumps(document, indent=1, sort_keys=True) + "\n"
    )
    table = repro.table_markdown(collected["methods"], val.classes, collected["ablations"])
    write_text(os.path.join(out, "table.md"), table)
    references = {
        t: collected["methods"].get(t, {}).get("mean_iou")
        for t in ("BaselineNet", "DecoupledNet-dagger")
    }
    if collected["ratio_study"]:
        repro.plot_ratio(os.path.join(out, "ratio.png"), collected["ratio_study"], references)
    lines = report_lines(cfg, seed, results, collected, val, document, table)
    write_text(os.path.join(out, "report.md"), "\n".join(lines))


def results_document(cfg, seed, results, collected, val, base, extra):
    """What results.json holds: collect()'s tables, the config, dataset and plan, the claims
    and every run's attention measures, and `extra`."""
    return dict(
        collected,
        config=experiment.describe(cfg, seed),
        seed=seed,
        dataset=dict(repro.DATASET, seed=seed),
        classes={str(k): v for k, v in val.classes.items()},
        ratios=list(repro.RATIOS),
        subsets=repro.SUBSETS,
        shared_stages="stages 0 and 1 (image labels only) trained once in %s and "
        "shared by every run; the baselines start from its stage-0 "
        "snapshot" % os.path.basename(base.dir),
        claims=repro.claims(results),
        attention={r["name"]: r["attention"] for r in results if r.get("attention")},
        **extra,
    )


def report_lines(cfg, seed, results, collected, val, document, table):
    """report.md: the recipe, Table 1, the paper's rows, Figure 4, the claims, the attention
    and the stage-0 labels' accuracy."""
    arch, stages = cfg.architecture, cfg.schedule.stages
    lines = [
        '# TransferNet in miniature (config "%s", built-in dataset, seed %d)' % (cfg.name, seed),
        "",
        "Width %g, crop %d, conv5_3 scaled by %g; stages 0 / 1 / 2: %d / %d / %d iterations; "
        "%d val images. %s."
        % (
            arch.width,
            arch.crop,
            arch.feature_scale,
            stages["classifier"].max_iter,
            stages["attention"].max_iter,
            stages["joint"].max_iter,
            len(val.ids),
            document["shared_stages"].capitalize(),
        ),
        "",
        "## Table 1 in miniature (IoU %, val set of the built-in dataset)",
        "",
        table,
        "## The paper on the same columns",
        "",
        repro.paper_markdown(val.classes),
        "## Figure 4 in miniature (TransferNet, predicted labels)",
        "",
        repro.ratio_markdown(collected["ratio_study"]),
        "![ratio](ratio.png)",
        "",
        "## The paper's claims (mIoU % of each side: seeds, or subsets at the smallest ratio)",
        "",
        repro.claims_markdown(document["claims"]),
        "## What the attention attends to (val, ground-truth labels)",
        "",
        repro.attention_markdown(results, document.get("attention_stage1")),
    ]
    acc = document.get("label_accuracy")
    if acc:
        lines += [
            "Stage-0 labels of the val images: exact set %.1f %%, precision %.1f %%, "
            "recall %.1f %%."
            % (100 * acc["exact"], 100 * (acc["precision"] or 0), 100 * (acc["recall"] or 0)),
            "",
        ]
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/repro-mini", help="output folder")
    parser.add_argument("--data", default="data/builtin-mini", help="built-in dataset folder")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="dataset, subset, data layer and solver seed (default 0)",
    )
    parser.add_argument("--workers", type=int, default=2, help="dataset build processes")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs trained at once after the shared stages (default 2: one "
        "per core of a 2-core machine; 1 = one after the other)",
    )
    parser.add_argument("--plan", action="store_true", help="list the runs and stop")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def log_plan(specs, todo):
    for i, spec in enumerate(specs):
        log(
            "%2d/%d %-24s ratio %-5g seed %d labels %-14s %s"
            % (
                i + 1,
                len(specs),
                spec.name,
                spec.ratio,
                spec.seed,
                "+".join(spec.labels),
                "to run" if spec in todo else "finished",
            )
        )


def train_shared_stages(out, cfg, spec, source):
    """Stages 0 and 1 (image labels only) in the first run's folder, before every other run;
    returns that Run."""
    base = experiment.prepare(os.path.join(out, spec.name), cfg.with_data(source=source), spec.seed)
    for stage in ("classifier", "attention"):
        experiment.train(base, stage, progress=log)
    return base


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    specs = repro.plan(args.seed)
    try:
        run_plan(args, out, specs)
    except KeyboardInterrupt:
        finished = len(specs) - len(repro.pending(out, specs))
        raise interrupt.Interrupted(
            "%d of %d runs finished in %s" % (finished, len(specs), out)
        ) from None
    except (experiment.TrainingError, OSError, ValueError) as e:
        print("repro_mini.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


def run_plan(args, out, specs):
    """Steps 1-3 of the module docstring (--plan: the list of runs only)."""
    start = time.time()
    todo = repro.pending(out, specs)
    log_plan(specs, todo)
    if args.plan:
        return
    import caffe

    caffe.set_mode_cpu()
    data = builtin_lmdbs.ensure_lmdbs(
        args.data,
        config.MINI.data.resize,
        log,
        [source_subset(spec) for spec in specs],
        seed=args.seed,
        workers=args.workers,
        **repro.DATASET,
    )
    sources = {spec.name: data.sources[source_subset(spec)] for spec in specs}
    cfg = config.for_table(config.MINI, data.table).with_data(target=data.target)
    val = evaluation.eval_set(*data.spec.val, data.target)
    base = train_shared_stages(out, cfg, specs[0], sources[specs[0].name])
    labels = [evaluation.image_labels(base, val, source) for source in ("predicted", "gt")]
    stage1 = evaluation.stage_attention(base, val, labels[1], "attention")
    finished = {spec.name: repro.read_result(out, spec) for spec in specs}

    def record(result=None):  # results so far -> the outputs
        if result:
            finished[result["name"]] = result
        results = [finished[spec.name] for spec in specs if finished[spec.name]]
        write_outputs(
            out,
            cfg,
            args.seed,
            results,
            val,
            base,
            {
                "label_accuracy": evaluation.label_accuracy(*labels),
                "attention_stage1": stage1,
                "wall_seconds": round(time.time() - start, 1),
                "run_seconds": {r["name"]: r["seconds"] for r in results},
            },
        )

    jobs = [(spec, base, out, cfg, sources, val) for spec in todo]
    if args.jobs > 1 and len(jobs) > 1:
        run_parallel(jobs, args.jobs, record)
    else:
        for job in jobs:
            record(execute(*job))
    if not todo:
        record()
    log(
        "wrote %s/{results.json,table.md,ratio.png,report.md} (%.0f s)" % (out, time.time() - start)
    )


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "repro_mini.py", RESUME))
