"""Command-line options shared by the tools that load the trained networks (infer.py,
visualize.py): which networks and weights, and how labels are chosen (paper Sec. 5)."""

from transfernet import config, inference, solvers


def add_model_arguments(parser):
    """The networks and label-selection options shared by tools/infer.py and visualize.py."""
    parser.add_argument(
        "--config",
        choices=sorted(config.CONFIGS),
        default="paper",
        help="network config whose models and final snapshots are the "
        "defaults of --model/--weights/--classifier-* (default paper)",
    )
    parser.add_argument("--model", help="seg_deploy prototxt (default models/<config>/...)")
    parser.add_argument("--weights", help="joint-stage caffemodel (default: final snapshot)")
    parser.add_argument("--classifier-model", help="classifier_deploy prototxt")
    parser.add_argument(
        "--classifier-weights", help="stage-0 caffemodel (default: final classifier snapshot)"
    )
    parser.add_argument(
        "--classes",
        default="voc",
        help="candidate classes of the classifier: 'voc' (1..20), ids "
        "'21,22', or a dataset meta.json / {id: name} JSON",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=inference.CLASSIFIER_THRESHOLD,
        help="classifier sigmoid threshold (default %(default)s)",
    )


def resolve_model_arguments(args):
    """Fill the unset --model/--weights/--classifier-* from --config's committed models and
    final snapshots (transfernet.solvers.final_snapshot)."""
    cfg = config.CONFIGS[args.config]
    args.model = args.model or cfg.layout.model("seg_deploy")
    args.weights = args.weights or solvers.final_snapshot(cfg, "joint")
    args.classifier_model = args.classifier_model or cfg.layout.model("classifier_deploy")
    args.classifier_weights = args.classifier_weights or solvers.final_snapshot(cfg, "classifier")
    return args
