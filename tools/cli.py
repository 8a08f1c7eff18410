"""Command-line options shared by the tools that load the trained networks (infer.py,
visualize.py): which networks and weights, and how labels are chosen (paper Sec. 5)."""

import os

from transfernet import class_table, config, experiment, inference, solvers


def add_model_arguments(parser):
    """The networks and label-selection options shared by tools/infer.py and visualize.py."""
    parser.add_argument(
        "--config",
        choices=sorted(config.CONFIGS),
        default="paper",
        help="network config whose models and final snapshots are the "
        "defaults of --model/--weights/--classifier-* (default paper)",
    )
    parser.add_argument(
        "--run",
        help="a run folder (tools/demo.py, `make models SPEC=...`) whose nets, final snapshots "
        "and classes.json are the defaults instead of --config's",
    )
    parser.add_argument("--model", help="seg_deploy prototxt (default models/<config>/...)")
    parser.add_argument("--weights", help="joint-stage caffemodel (default: final snapshot)")
    parser.add_argument("--classifier-model", help="classifier_deploy prototxt")
    parser.add_argument(
        "--classifier-weights", help="stage-0 caffemodel (default: final classifier snapshot)"
    )
    parser.add_argument(
        "--classes",
        help="candidate classes of the classifier, whose names --labels may use: 'voc' "
        "(1..20), ids '21,22', or a classes.json / dataset meta.json / {id: name} JSON "
        "(default: the --run's classes.json or its target dataset's classes, else voc)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=inference.CLASSIFIER_THRESHOLD,
        help="classifier sigmoid threshold (default %(default)s)",
    )


def resolve_model_arguments(args):
    """Fill the unset --model/--weights/--classifier-*/--classes from the --run folder's nets,
    final snapshots and classes.json, or --config's committed models and final snapshots
    (transfernet.solvers.final_snapshot) and VOC's classes. ValueError naming a --run that
    is not a run folder."""
    if args.run:
        run = experiment.open_run(args.run)
        cfg, layout = run.cfg, run.layout
        # the run's class table, or its target dataset's classes (a demo's run)
        tables = [os.path.join(run.dir, class_table.FILE_NAME)]
        tables += [os.path.join(cfg.data.target, "meta.json")] if cfg.data.target else []
        found = [t for t in tables if os.path.isfile(t)]
        args.classes = args.classes or (found[0] if found else "voc")
    else:
        cfg = config.CONFIGS[args.config]
        layout = cfg.layout
        args.classes = args.classes or "voc"
    args.model = args.model or layout.model("seg_deploy")
    args.weights = args.weights or solvers.final_snapshot(cfg, "joint", layout)
    args.classifier_model = args.classifier_model or layout.model("classifier_deploy")
    args.classifier_weights = args.classifier_weights or solvers.final_snapshot(
        cfg, "classifier", layout
    )
    return args
