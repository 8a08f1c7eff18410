"""Solvers of the three training stages, from the same configs as the nets (Sec. 6.1).

A solver is generated for a Layout (the committed tree's, cfg.layout, or a run folder's) and a
seed: its net, snapshot prefix and initial weights are the layout's, its random_seed the seed.
Each stage starts from the previous stage's final snapshot through the solver's `weights`
field. Committed paths are relative to the checkout root, where caffe runs. No solver_mode line:
`caffe train -gpu N` (or its absence) decides.
"""

from caffe.proto import caffe_pb2

STAGES = ("classifier", "attention", "joint")
STAGE_NET = {
    "classifier": "classifier_train",
    "attention": "attention_train",
    "joint": "joint_train",
}
ADAM_BETA1, ADAM_BETA2 = 0.9, 0.999  # default hyper-parameters of Adam (Sec. 6.1)
CLASSIFIER_WEIGHT_DECAY = 5e-4  # our choice (stage 0 is not described in the paper)
RANDOM_SEED = 0  # filler initialisation is deterministic
LR_STEP_GAMMA = 0.1  # a stage's lr_step divides its learning rate by 10


def final_snapshot(cfg, stage, layout=None):
    """Weights `stage` ends with in `layout` (default cfg.layout): Caffe snapshots after the
    last iteration."""
    return (layout or cfg.layout).snapshot(stage, cfg.schedule.stages[stage].max_iter)


def initial_weights(cfg, stage, layout=None):
    """Caffemodel the stage starts from in `layout` (default cfg.layout): the layout's
    classifier_init for stage 0 (None: from scratch), else the previous stage's final snapshot."""
    layout = layout or cfg.layout
    if stage == STAGES[0]:
        return layout.classifier_init
    return final_snapshot(cfg, STAGES[STAGES.index(stage) - 1], layout)


def adam(schedule, stage, net, snapshot_prefix, weights, seed):
    """SolverParameter training the prototxt `net` with the Schedule's numbers for `stage`
    (Adam; fixed learning rate, or step at the stage's lr_step), from `weights` (or None:
    fillers)."""
    st = schedule.stages[stage]
    param = caffe_pb2.SolverParameter(
        net=net,
        type="Adam",
        base_lr=st.base_lr,
        momentum=ADAM_BETA1,
        momentum2=ADAM_BETA2,
        lr_policy="fixed",
        iter_size=st.iter_size,
        max_iter=st.max_iter,
        display=schedule.display,
        average_loss=schedule.display,
        snapshot=schedule.snapshot,
        snapshot_prefix=snapshot_prefix,
        random_seed=seed,
    )
    if st.lr_step:
        param.lr_policy, param.gamma, param.stepsize = "step", LR_STEP_GAMMA, st.lr_step
    if stage == "classifier":
        param.weight_decay = CLASSIFIER_WEIGHT_DECAY
    if weights:
        param.weights.append(weights)
    return param


def solver(cfg, stage, layout=None, seed=RANDOM_SEED):
    """SolverParameter of `stage` in `layout` (default cfg.layout) with `seed`."""
    if stage not in STAGES:
        raise ValueError("unknown stage %r; expected one of %s" % (stage, ", ".join(STAGES)))
    layout = layout or cfg.layout
    return adam(
        cfg.schedule,
        stage,
        layout.model(STAGE_NET[stage]),
        layout.snapshot_prefix(stage),
        initial_weights(cfg, stage, layout),
        seed,
    )


def describe(cfg, stage):
    """What the generated solver of `stage` is, for this config: its header's lines after the
    generator's (transfernet.generated)."""
    st = cfg.schedule.stages[stage]
    batch = "per-forward batch %d x iter_size %d = %d images per update" % (
        st.batch,
        st.iter_size,
        st.batch * st.iter_size,
    )
    lr = "%g%s" % (st.base_lr, " (/10 after %d iterations)" % st.lr_step if st.lr_step else "")
    what = {
        "classifier": "Stage 0 (multi-label VGG-16 classifier): not in the paper; Adam "
        "%s, weight decay %g,\n%s and %d iterations are our choice."
        % (lr, CLASSIFIER_WEIGHT_DECAY, batch, st.max_iter),
        "attention": "Stage 1, Eq. 6: Adam lr %s, %s, %d iterations." % (lr, batch, st.max_iter),
        "joint": "Stage 2, Eq. 9: Adam lr %s, %s, %d iterations." % (lr, batch, st.max_iter),
    }[stage]
    if cfg.name == "paper" and stage != "classifier":
        what += {
            "attention": "\nlr 0.001 and iter_size 8 are the authors' published values; "
            "Sec. 6.1 gives the mini-batch of 64.",
            "joint": "\nlr 0.0005 and mini-batch 64 are Sec. 6.1; the authors' iter_size "
            "is 16, hence 4 images per forward.",
        }[stage]
    weights = initial_weights(cfg, stage)
    start = (
        "Starts from %s." % weights
        if weights
        else "Starts from scratch (fillers, random_seed %d)." % RANDOM_SEED
    )
    return what.split("\n") + [
        start,
        "Run from the checkout root (%s/ is committed, empty). No solver_mode: the "
        "-gpu flag decides." % cfg.layout.snapshot_prefix(stage).rsplit("/", 1)[0],
    ]
