"""Experiments in a run folder: a config's nets and solvers, and its training stages with the
real `caffe train` CLI.

Used by tools/demo.py and tools/repro_mini.py (transfernet.evaluation segments and scores a
run's images, transfernet.reports writes its metrics and report). A run folder holds:

  config.json                        the config and seed the folder was made with
  models/<net>.prototxt              every network of transfernet.nets, for this config
  solvers/<stage>.prototxt           transfernet.solvers, for this folder
  snapshots/<stage>/<stage>_iter_N.caffemodel
  logs/<stage>.log .csv .png .json   caffe's output, parsed rows, loss curves, timing
  pred/<labels>_<method>/<id>.png    label maps; eval.json next to them
  pred/labels_<labels>.json          the labels each image was segmented with

A baseline run (prepare(..., baseline=...), Sec. 6.3) also holds models/<baseline>_train and
_deploy: its joint stage trains the baseline from stage 0's snapshot, inference uses its deploy
net; its attention stage is not used.

models/, solvers/ and snapshots/ are the run's layout (Run.layout, config.Layout.run): the
generators are given it and the seed, and prepare writes what they return. Paths written into
prototxts are absolute, so caffe may run from any folder.
"""

import collections
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from google.protobuf import text_format

from transfernet import (
    baselines,
    caffe_log,
    config,
    fileio,
    generated,
    interrupt,
    records,
    solvers,
    verbosity,
)
from transfernet.atomic import write_text
from transfernet.weights import check_solver, describe_fits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Run(collections.namedtuple("Run", "dir cfg seed baseline", defaults=(None,))):
    """A run folder, the config it was made with (its dataset and initial weights absolute)
    and seed; `baseline`: the baseline its joint stage trains, or None."""

    __slots__ = ()

    @property
    def layout(self):
        """Where the run's nets, solvers and snapshots live (the config's initial weights)."""
        return config.Layout.run(self.dir, self.cfg.layout.classifier_init)


_ITERATION = re.compile(r"Iteration (\d+)")
# Where glog's crash report (stack trace) starts, after the lines saying what went wrong.
_CRASH_REPORT = re.compile(r"^(\*\*\* (Check failure stack trace|Aborted at|SIG)|PC: @)")
POLL_SECONDS = 5
TAIL_LINES = 8  # of a failed caffe train's log, in its error


class TrainingError(RuntimeError):
    """A stage that cannot start or whose `caffe train` failed (the message says why and
    names the files)."""


def timestamped_log(name):
    """A progress callback printing '[<name> HH:MM:SS] message' lines on stderr."""

    def log(message):
        print_progress("[%s %s] %s" % (name, time.strftime("%H:%M:%S"), message))

    return log


def print_progress(message):
    """The default progress callback: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def absolute(cfg, root=ROOT):
    """The config with its dataset folders and initial weights made absolute (from root)."""

    def resolve(path):
        return path if path is None else os.path.join(root, path)

    data, layout = cfg.data, cfg.layout
    return cfg._replace(
        data=data._replace(source=resolve(data.source), target=resolve(data.target)),
        layout=layout._replace(classifier_init=resolve(layout.classifier_init)),
    )


def describe(cfg, seed):
    """JSON-able description of a config and seed (what config.json holds): the fields of its
    architecture, data and schedule, its name, initial weights and committed solver and
    snapshot folders in one flat mapping (the keys the reports read), and the seed."""
    out = dict(cfg.architecture._asdict(), **cfg.data._asdict(), **cfg.schedule._asdict())
    out.update(
        name=cfg.name,
        seed=seed,
        stages={k: v._asdict() for k, v in sorted(cfg.schedule.stages.items())},
        classifier_init=cfg.layout.classifier_init,
        solver_dir=cfg.layout.solvers,
        snapshot_dir=cfg.layout.snapshots,
    )
    return json.loads(json.dumps(out))  # tuples as lists, as config.json reads back


def open_run(run_dir):
    """The Run of a folder made by prepare, from its config.json; ValueError naming a folder
    without one or with one this code cannot rebuild."""
    path = os.path.join(os.path.abspath(run_dir), "config.json")
    try:
        with open(path) as f:
            found = json.load(f)
    except FileNotFoundError:
        raise ValueError("%s is not a run folder: it has no config.json" % run_dir) from None
    except ValueError as e:
        raise ValueError("%s: not a run's config.json (%s)" % (path, e)) from None
    try:
        arch = dict((k, found[k]) for k in config.Architecture._fields if k in found)
        if arch.get("kernels") is not None:
            arch["kernels"] = tuple(tuple(block) for block in arch["kernels"])
        cfg = config.Config(
            found["name"],
            config.Architecture(**arch),
            config.Data(**{k: found[k] for k in config.Data._fields}),
            config.Schedule(
                {k: config.Stage(**v) for k, v in found["stages"].items()},
                found["snapshot"],
                found["display"],
            ),
            config.Layout(
                os.path.join("models", found["name"]),
                found["solver_dir"],
                found["snapshot_dir"],
                found["classifier_init"],
            ),
        )
    except (KeyError, TypeError) as e:
        raise ValueError("%s: not a run's config.json (%s)" % (path, e)) from None
    run = Run(os.path.dirname(path), cfg, found["seed"], found.get("baseline"))
    if describe(cfg, run.seed) != {k: v for k, v in found.items() if k != "baseline"}:
        raise ValueError("%s was written by another version of transfernet.experiment" % path)
    return run


def model_file(run, net):
    return run.layout.model(net)


def deploy_net(run):
    """Segmentation deploy net of the run: seg_deploy, or the baseline's."""
    return run.baseline + "_deploy" if run.baseline else "seg_deploy"


def solver_file(run, stage):
    return run.layout.solver(stage)


def final_snapshot(run, stage):
    """Weights a stage ends with (Caffe snapshots after its last iteration)."""
    return solvers.final_snapshot(run.cfg, stage, run.layout)


def log_file(run, stage, ext=".log"):
    return os.path.join(run.dir, "logs", stage + ext)


def pred_dir(run, labels, method):
    return os.path.join(run.dir, "pred", "%s_%s" % (labels, method))


def prepare(run_dir, cfg, seed=0, root=ROOT, baseline=None):
    """Write the config's nets and solvers into run_dir; returns the Run.

    `baseline` (one of baselines.BASELINES): the joint stage trains that baseline instead,
    from stage 0's snapshot (Sec. 6.3).

    Relative dataset and weight paths of cfg are taken from `root`. The generators place
    everything in the run's layout and give the data layers and the solvers `seed`. A folder
    made with another config or seed is refused (ValueError naming the differing fields): use
    another folder or delete it.
    """
    if baseline is not None and baseline not in baselines.BASELINES:
        raise ValueError(
            "unknown baseline %r; expected one of %s" % (baseline, ", ".join(baselines.BASELINES))
        )
    run = Run(os.path.abspath(run_dir), absolute(cfg, root), seed, baseline)
    wanted = describe(run.cfg, seed)
    if baseline:
        wanted["baseline"] = baseline
    config_path = os.path.join(run.dir, "config.json")
    if os.path.exists(config_path):
        found = fileio.read_json(config_path)
        differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if differ:
            raise ValueError(
                "%s was made with another config (%s differ); use another run "
                "folder or remove it (--force)" % (run.dir, ", ".join(differ))
            )
    header = '# Written by transfernet.experiment for %s (config "%s", seed %d).\n' % (
        run.dir,
        cfg.name,
        seed,
    )
    layout = run.layout
    for file in generated.run_files(baseline):
        param = file.build(run.cfg, layout, seed)
        write_text(generated.path(file, layout), header + text_format.MessageToString(param))
    for stage in solvers.STAGES:
        os.makedirs(os.path.dirname(layout.snapshot_prefix(stage)), exist_ok=True)
    write_text(config_path, json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    return run


def stage_done(run, stage):
    """Timing record of a finished stage ({"seconds", "iterations", "snapshot"}), or None."""
    record = log_file(run, stage, ".json")
    if not (os.path.exists(record) and os.path.exists(final_snapshot(run, stage))):
        return None
    return fileio.read_json(record)


def share_stages(base, run, stages):
    """Give `run` the finished `stages` of the `base` run: hard links to its final snapshots
    and its timing records (marked "shared_from"), so train sees them done."""
    for stage in stages:
        if stage_done(run, stage):
            continue
        done = stage_done(base, stage)
        if not done:
            raise TrainingError(
                "%s: stage %s of the shared run %s is not finished" % (run.dir, stage, base.dir)
            )
        target = final_snapshot(run, stage)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            os.remove(target)
        os.link(final_snapshot(base, stage), target)
        os.makedirs(os.path.dirname(log_file(run, stage)), exist_ok=True)
        write_text(
            log_file(run, stage, ".json"),
            json.dumps(dict(done, snapshot=target, shared_from=base.dir), indent=1) + "\n",
        )


def _last_iteration(path):
    with open(path, errors="replace") as f:
        found = _ITERATION.findall(f.read())
    return int(found[-1]) if found else 0


def train(run, stage, force=False, progress=print_progress):
    """Train `stage` with `caffe train -solver` (a subprocess, glog output kept in
    logs/<stage>.log, parsed to .csv and plotted to .png); returns its timing record.

    A finished stage (final snapshot and record present) is not redone unless `force`;
    training a stage invalidates the later stages and the run's predictions. Before caffe
    runs, the solver's initial weights are checked against the train net, and the layers
    from the file and from fillers are reported (check_solver). ValueError naming a dataset
    folder of the config that is not a dataset. TrainingError naming initial weights that
    are missing or do not fit, or with the end of caffe's log if caffe fails; the log is then
    left as .log.failed.
    """
    done = stage_done(run, stage)
    if done and not force:
        progress("%s: done (%.0f s), %s" % (stage, done["seconds"], done["snapshot"]))
        return done
    check_start(run, stage, progress)
    clear_outputs(run, stage)
    seconds = run_caffe_train(run, stage, progress)
    parsed = caffe_log.read_log(log_file(run, stage))
    caffe_log.write_csv(log_file(run, stage, ".csv"), parsed)
    caffe_log.plot(log_file(run, stage, ".png"), parsed, title="%s (%s)" % (stage, run.cfg.name))
    max_iter = run.cfg.schedule.stages[stage].max_iter
    record = {
        "seconds": round(seconds, 1),
        "iterations": max_iter,
        "snapshot": final_snapshot(run, stage),
    }
    write_text(log_file(run, stage, ".json"), json.dumps(record, indent=1) + "\n")
    progress("%s: trained %d iterations in %.0f s" % (stage, max_iter, seconds))
    return record


def check_start(run, stage, progress):
    """Before anything is removed: the config's datasets exist, BaselineNet's fully
    convolutional classifier is written, and the solver's initial weights fit its net (the
    layers from the file and from fillers are reported)."""
    for dataset in (run.cfg.data.source, run.cfg.data.target):
        if dataset is not None:
            records.read_meta(dataset)  # ValueError naming a missing dataset folder
    try:  # a missing or unfit file, a dataset the layer rejects
        if run.baseline and stage == baselines.STAGE:
            stage0 = final_snapshot(run, "classifier")
            changed = baselines.write_initial_weights(run.cfg, run.baseline, stage0)
            if changed:
                progress(
                    "%s: %s as convolutions (FCN surgery) in %s"
                    % (
                        stage,
                        ", ".join(name for name, _, _ in changed),
                        baselines.initial_weights(run.baseline, stage0),
                    )
                )
        fits = check_solver(solver_file(run, stage))
    except (OSError, ValueError) as e:
        raise TrainingError("%s: %s" % (stage, e)) from None
    for line in describe_fits(fits):
        progress("%s: %s" % (stage, line))


def clear_outputs(run, stage):
    """Remove what training `stage` makes stale: its snapshots, the later stages' records
    (they start from it) and the run's predictions."""
    folder = os.path.dirname(run.layout.snapshot_prefix(stage))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for later in solvers.STAGES[solvers.STAGES.index(stage) + 1 :]:
        if os.path.exists(log_file(run, later, ".json")):
            os.remove(log_file(run, later, ".json"))
    shutil.rmtree(os.path.join(run.dir, "pred"), ignore_errors=True)
    os.makedirs(os.path.dirname(log_file(run, stage)), exist_ok=True)


def run_caffe_train(run, stage, progress):
    """`caffe train` of the stage's solver, its output in logs/<stage>.log (.log.partial
    while it runs), progress every POLL_SECONDS; returns the seconds it took. TrainingError
    with the end of caffe's log if it fails (the log is left as .log.failed). Caffe is
    stopped if this process is (Ctrl-C, SIGTERM) and killed if it dies."""
    partial = log_file(run, stage, ".log.partial")
    env = verbosity.logging_env()
    max_iter = run.cfg.schedule.stages[stage].max_iter
    start = time.time()
    with open(partial, "w") as log:
        proc = subprocess.Popen(
            ["caffe", "train", "-solver", solver_file(run, stage)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=functools.partial(interrupt.die_with_parent, os.getpid()),
        )
        try:
            while True:
                try:
                    proc.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    progress(
                        "%s: iteration %d/%d (%.0f s)"
                        % (stage, _last_iteration(partial), max_iter, time.time() - start)
                    )
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    seconds = time.time() - start
    if proc.returncode != 0 or not os.path.exists(final_snapshot(run, stage)):
        failed = log_file(run, stage, ".log.failed")
        os.replace(partial, failed)
        status = proc.returncode
        raise TrainingError(
            "caffe train of stage %s failed (%s); the end of its log %s:\n%s"
            % (
                stage,
                "exit status %d" % status if status >= 0 else signal.Signals(-status).name,
                failed,
                "\n".join("  " + line for line in log_tail(failed)) or "  (the log is empty)",
            )
        )
    os.replace(partial, log_file(run, stage))
    return seconds


def log_tail(path, lines=TAIL_LINES):
    """The last `lines` non-blank lines of a log before glog's crash report, if any."""
    kept = []
    with open(path, errors="replace") as f:
        for line in f:
            if _CRASH_REPORT.match(line):
                break
            if line.strip():
                kept.append(line.rstrip())
    return kept[-lines:]


def finished_stages(run):
    """The run's stages whose training is finished (stage_done), in training order."""
    return [stage for stage in solvers.STAGES if stage_done(run, stage)]
