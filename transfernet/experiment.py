"""Experiments in a run folder: a config's nets and solvers, training stages with the real
`caffe train` CLI, inference with the trained models, comp6 evaluation, report writers.

Used by tools/demo.py (the tiny config on the built-in dataset); written for several
configs, datasets and run folders (baselines, source-ratio studies). A run folder holds:

  config.json                        the config and seed the folder was made with
  models/<net>.prototxt              every network of transfernet.nets, for this config
  solvers/<stage>.prototxt           transfernet.solvers, pointed at this folder
  snapshots/<stage>/<stage>_iter_N.caffemodel
  logs/<stage>.log .csv .png .json   caffe's output, parsed rows, loss curves, timing
  pred/<labels>_<method>/<id>.png    label maps; eval.json next to them
  pred/labels_<labels>.json          the labels each image was segmented with

A baseline run (prepare(..., baseline=...), Sec. 6.3) also holds models/<baseline>_train and
_deploy: its joint stage trains the baseline from stage 0's snapshot, inference uses its deploy
net; its attention stage is not used.

Paths written into prototxts are absolute, so caffe may run from any folder.
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

from transfernet import baselines, caffe_log, crf, fileio, inference, nets, records, score, solvers
from transfernet.weights import check_solver, describe_fits
from transfernet.atomic import write_text
from transfernet.classes import BACKGROUND, CLASS_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Run = collections.namedtuple('Run', 'dir cfg seed baseline', defaults=(None,))

# No-transfer comparison (issue 4, "make demo"): the densified attention s (Eq. 7) of each
# label, bilinearly upsampled to the image, min-max normalised per label over the image, is
# foreground where it exceeds this threshold; labels are combined as the decoder's outputs
# are (largest score wins, background where none is foreground).
NO_TRANSFER_THRESHOLD = 0.5
LABEL_SOURCES = ('predicted', 'gt')
# Segmentation methods of one image: the decoder's maps with and without dense CRF
# (TransferNet, Sec. 5) and the thresholded s of the same forward (no transfer).
METHODS = ('decoder', 'decoder_crf', 'no_transfer')
_ITERATION = re.compile(r'Iteration (\d+)')
# Error lines of a failed caffe run: glog fatal lines (F1201 ..., or F20261201 ... from glog
# 0.6 on Debian 12), Python exceptions of Python layers.
_ERROR = re.compile(r'^(F(\d{4})?\d{4} |[A-Za-z_.]*(Error|Exception)\b)')
POLL_SECONDS = 5


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


def absolute(cfg, root=ROOT):
    """The config with its dataset folders and initial weights made absolute (from root)."""
    def resolve(path):
        return path if path is None else os.path.join(root, path)
    return cfg._replace(source=resolve(cfg.source), target=resolve(cfg.target),
                        classifier_init=resolve(cfg.classifier_init))


def describe(cfg, seed):
    """JSON-able description of a config and seed (what config.json holds)."""
    out = cfg._asdict()
    out['stages'] = {k: v._asdict() for k, v in sorted(cfg.stages.items())}
    out['seed'] = seed
    return out


def model_file(run, net):
    return os.path.join(run.dir, 'models', net + '.prototxt')


def stage_net(run, stage):
    """Training net of `stage`: the baseline's for the joint stage of a baseline run."""
    if run.baseline and stage == baselines.STAGE:
        return run.baseline + '_train'
    return solvers.STAGE_NET[stage]


def deploy_net(run):
    """Segmentation deploy net of the run: seg_deploy, or the baseline's."""
    return run.baseline + '_deploy' if run.baseline else 'seg_deploy'


def solver_file(run, stage):
    return os.path.join(run.dir, 'solvers', stage + '.prototxt')


def snapshot_prefix(run, stage):
    return os.path.join(run.dir, 'snapshots', stage, stage)


def final_snapshot(run, stage):
    """Weights a stage ends with (Caffe snapshots after its last iteration)."""
    return '%s_iter_%d.caffemodel' % (snapshot_prefix(run, stage),
                                      run.cfg.stages[stage].max_iter)


def log_file(run, stage, ext='.log'):
    return os.path.join(run.dir, 'logs', stage + ext)


def pred_dir(run, labels, method):
    return os.path.join(run.dir, 'pred', '%s_%s' % (labels, method))


def _seeded(proto, seed):
    """NetParameter with every SourceTargetData layer's "seed" set to `seed`."""
    for layer in proto.layer:
        if layer.type == 'Python' and layer.python_param.layer == 'SourceTargetData':
            param = json.loads(layer.python_param.param_str)
            param['seed'] = seed
            layer.python_param.param_str = json.dumps(param, sort_keys=True)
    return proto


def prepare(run_dir, cfg, seed=0, root=ROOT, baseline=None):
    """Write the config's nets and solvers into run_dir; returns the Run.

    `baseline` (one of baselines.BASELINES): the joint stage trains that baseline instead.

    Relative dataset and weight paths of cfg are taken from `root`. The data layers and
    the solvers get `seed`. A folder made with another config or seed is refused
    (ValueError naming the differing fields): use another folder or delete it.
    """
    if baseline is not None and baseline not in baselines.BASELINES:
        raise ValueError('unknown baseline %r; expected one of %s'
                         % (baseline, ', '.join(baselines.BASELINES)))
    run = Run(os.path.abspath(run_dir), absolute(cfg, root), seed, baseline)
    wanted = describe(run.cfg, seed)
    if baseline:
        wanted['baseline'] = baseline
    config_path = os.path.join(run.dir, 'config.json')
    if os.path.exists(config_path):
        with open(config_path) as f:
            found = json.load(f)
        differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if differ:
            raise ValueError('%s was made with another config (%s differ); use another run '
                             'folder or remove it (--force)' % (run.dir, ', '.join(differ)))
    header = '# Written by transfernet.experiment for %s (config "%s", seed %d).\n' % (
        run.dir, cfg.name, seed)
    builds = [(net, nets.build) for net in nets.NETS] + [
        (net, baselines.build) for net in ('%s_train' % baseline, '%s_deploy' % baseline)
        if baseline]
    for net, build in builds:
        write_text(model_file(run, net), header + str(_seeded(build(run.cfg, net), seed)))
    for stage in solvers.STAGES:
        param = solvers.solver(run.cfg, stage)
        param.net = model_file(run, stage_net(run, stage))
        param.snapshot_prefix = snapshot_prefix(run, stage)
        param.random_seed = seed
        del param.weights[:]
        weights = initial_weights(run, stage)
        if weights:
            param.weights.append(weights)
        write_text(solver_file(run, stage), header + str(param))
        os.makedirs(os.path.dirname(snapshot_prefix(run, stage)), exist_ok=True)
    write_text(config_path, json.dumps(wanted, indent=1, sort_keys=True) + '\n')
    return run


def initial_weights(run, stage):
    """Caffemodel a stage starts from: the previous stage's final snapshot (Sec. 6.1), the
    config's classifier_init for stage 0 (None: from scratch); a baseline's joint stage
    starts from stage 0's (Sec. 6.3)."""
    if stage == solvers.STAGES[0]:
        return run.cfg.classifier_init
    if run.baseline and stage == baselines.STAGE:
        return final_snapshot(run, solvers.STAGES[0])
    return final_snapshot(run, solvers.STAGES[solvers.STAGES.index(stage) - 1])


def stage_done(run, stage):
    """Timing record of a finished stage ({"seconds", "iterations", "snapshot"}), or None."""
    record = log_file(run, stage, '.json')
    if not (os.path.exists(record) and os.path.exists(final_snapshot(run, stage))):
        return None
    with open(record) as f:
        return json.load(f)


def share_stages(base, run, stages):
    """Give `run` the finished `stages` of the `base` run: hard links to its final snapshots
    and its timing records (marked "shared_from"), so train sees them done."""
    for stage in stages:
        if stage_done(run, stage):
            continue
        done = stage_done(base, stage)
        if not done:
            raise RuntimeError('%s: stage %s of the shared run %s is not finished'
                               % (run.dir, stage, base.dir))
        target = final_snapshot(run, stage)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            os.remove(target)
        os.link(final_snapshot(base, stage), target)
        os.makedirs(os.path.dirname(log_file(run, stage)), exist_ok=True)
        write_text(log_file(run, stage, '.json'), json.dumps(
            dict(done, snapshot=target, shared_from=base.dir), indent=1) + '\n')


def _last_iteration(path):
    with open(path, errors='replace') as f:
        found = _ITERATION.findall(f.read())
    return int(found[-1]) if found else 0


def train(run, stage, force=False, progress=_stderr):
    """Train `stage` with `caffe train -solver` (a subprocess, glog output kept in
    logs/<stage>.log, parsed to .csv and plotted to .png); returns its timing record.

    A finished stage (final snapshot and record present) is not redone unless `force`;
    training a stage invalidates the later stages and the run's predictions. Before caffe
    runs, the solver's initial weights are checked against the train net, and the layers
    from the file and from fillers are reported (check_solver). ValueError naming a dataset
    folder of the config that is not a dataset. RuntimeError naming initial weights that are
    missing or do not fit, or with caffe's error lines if caffe fails; the log is then left
    as .log.failed.
    """
    done = stage_done(run, stage)
    if done and not force:
        progress('%s: done (%.0f s), %s' % (stage, done['seconds'], done['snapshot']))
        return done
    for dataset in (run.cfg.source, run.cfg.target):
        if dataset is not None:
            records.read_meta(dataset)  # ValueError naming a missing dataset folder
    try:  # before anything is removed: a missing or unfit file, a dataset the layer rejects
        fits = check_solver(solver_file(run, stage))
    except (OSError, ValueError) as e:
        raise RuntimeError('%s: %s' % (stage, e)) from None
    for line in describe_fits(fits):
        progress('%s: %s' % (stage, line))
    folder = os.path.dirname(snapshot_prefix(run, stage))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for later in solvers.STAGES[solvers.STAGES.index(stage) + 1:]:  # they start from it
        if os.path.exists(log_file(run, later, '.json')):
            os.remove(log_file(run, later, '.json'))
    shutil.rmtree(os.path.join(run.dir, 'pred'), ignore_errors=True)  # made by old weights
    os.makedirs(os.path.dirname(log_file(run, stage)), exist_ok=True)
    partial = log_file(run, stage, '.log.partial')
    env = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')
    max_iter = run.cfg.stages[stage].max_iter
    start = time.time()
    with open(partial, 'w') as log:
        proc = subprocess.Popen(['caffe', 'train', '-solver', solver_file(run, stage)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                proc.wait(POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                progress('%s: iteration %d/%d (%.0f s)' % (
                    stage, _last_iteration(partial), max_iter, time.time() - start))
    seconds = time.time() - start
    if proc.returncode != 0 or not os.path.exists(final_snapshot(run, stage)):
        os.replace(partial, log_file(run, stage, '.log.failed'))
        with open(log_file(run, stage, '.log.failed'), errors='replace') as f:
            errors = [line for line in f if _ERROR.match(line)]
        raise RuntimeError('caffe train of %s failed (exit %s); log %s:\n%s' % (
            stage, proc.returncode, log_file(run, stage, '.log.failed'),
            ''.join(errors[-10:]) or '(no error line; see the log)'))
    os.replace(partial, log_file(run, stage))
    parsed = caffe_log.read_log(log_file(run, stage))
    caffe_log.write_csv(log_file(run, stage, '.csv'), parsed)
    caffe_log.plot(log_file(run, stage, '.png'), parsed, title='%s (%s)' % (stage, run.cfg.name))
    record = {'seconds': round(seconds, 1), 'iterations': max_iter,
              'snapshot': final_snapshot(run, stage)}
    write_text(log_file(run, stage, '.json'), json.dumps(record, indent=1) + '\n')
    progress('%s: trained %d iterations in %.0f s' % (stage, max_iter, seconds))
    return record


def no_transfer_scores(s, height, width, threshold=NO_TRANSFER_THRESHOLD):
    """Score maps (K, height, width) of the no-transfer rule from s (K, h, w) on the padded
    square: s upsampled to the image (inference.unpad), min-max normalised per label over
    the image, kept where > threshold, 0 elsewhere. A constant map gives no foreground."""
    maps = inference.unpad(s, height, width).reshape(len(s), -1)
    low, high = maps.min(1, keepdims=True), maps.max(1, keepdims=True)
    norm = (maps - low) / np.maximum(high - low, np.finfo(np.float32).tiny)
    return np.where(norm > threshold, norm, 0).reshape(len(s), height, width).astype(np.float32)


def no_transfer_labels(s, class_ids, height, width, threshold=NO_TRANSFER_THRESHOLD):
    """Label map (height, width) uint8 of the no-transfer rule (see no_transfer_scores)."""
    return crf.combine_labels(no_transfer_scores(s, height, width, threshold), class_ids)


def label_maps(net, image, class_ids, methods=METHODS):
    """{method: (H, W) uint8 label map} of one image for `methods` (of METHODS; one
    seg_deploy forward per CRF setting; no_transfer uses the s of the forward without CRF)."""
    height, width = image.shape[:2]
    seg = inference.segment(net, image, class_ids)
    maps = {'decoder': seg.labels}
    if 'decoder_crf' in methods:
        maps['decoder_crf'] = inference.segment(net, image, class_ids, use_crf=True).labels
    if 'no_transfer' in methods:
        maps['no_transfer'] = (no_transfer_labels(seg.s, seg.class_ids, height, width)
                               if len(seg.class_ids) else seg.labels)
    return {m: maps[m] for m in methods}


def image_labels(run, ids, image_dir, gt_dir, source, candidates):
    """{id: sorted class ids} of the images: the stage-0 classifier's prediction among
    `candidates` (Sec. 5) or the ground truth (TransferNet-GT); cached in
    pred/labels_<source>.json."""
    from transfernet.fileio import read_image
    path = os.path.join(run.dir, 'pred', 'labels_%s.json' % source)
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if set(cached) == set(ids):
            return cached
    if source == 'gt':
        labels = {i: inference.gt_labels(os.path.join(gt_dir, i + '.png')) for i in ids}
    elif source == 'predicted':
        classifier = inference.load_net(model_file(run, 'classifier_deploy'),
                                        final_snapshot(run, 'classifier'))
        labels = {i: inference.predict_labels(
            classifier, read_image(os.path.join(image_dir, i + '.jpg')), candidates)
            for i in ids}
    else:
        raise ValueError('label source %r; expected one of %s' % (source, LABEL_SOURCES))
    write_text(path, json.dumps(labels, indent=1, sort_keys=True) + '\n')
    return labels


def infer(run, ids, image_dir, gt_dir, candidates, sources=LABEL_SOURCES,
          weights=None, progress=_stderr, methods=METHODS):
    """Segment the images `ids` (image_dir/<id>.jpg) with the run's deploy_net and the final
    joint snapshot (or `weights`) by each of `methods` (METHODS), for each label source; writes
    pred/<source>_<method>/<id>.png. Images whose PNGs all exist are skipped (resume).
    Returns {(source, method): folder}."""
    from transfernet.fileio import read_image
    net = inference.load_net(model_file(run, deploy_net(run)),
                             weights or final_snapshot(run, 'joint'))
    folders = {}
    for source in sources:
        labels = image_labels(run, ids, image_dir, gt_dir, source, candidates)
        out = {m: pred_dir(run, source, m) for m in methods}
        folders.update(((source, m), d) for m, d in out.items())
        todo = [i for i in ids
                if not all(os.path.exists(os.path.join(d, i + '.png')) for d in out.values())]
        progress('infer %s labels: %d images (%d done before)'
                 % (source, len(todo), len(ids) - len(todo)))
        for image_id in todo:
            image = read_image(os.path.join(image_dir, image_id + '.jpg'))
            maps = label_maps(net, image, labels[image_id], methods)
            for method, folder in out.items():
                fileio.write_label_png(os.path.join(folder, image_id + '.png'), maps[method])
    return folders


def evaluate(folder, ids, gt_dir, class_table):
    """comp6 scores of the PNGs in `folder` (score.evaluate), written to folder/eval.json."""
    result = score.evaluate(folder, gt_dir, ids, class_table)
    score.write_json(os.path.join(folder, 'eval.json'), result)
    return result


def present_classes(gt_dir, ids):
    """{id: name} of background and the classes present in the ground truth of `ids`."""
    present = sorted({c for i in ids for c in inference.gt_labels(os.path.join(gt_dir,
                                                                                i + '.png'))})
    table = {BACKGROUND: score.BACKGROUND_NAME}
    table.update((c, CLASS_NAMES.get(c, str(c))) for c in present)
    return table


def label_accuracy(predicted, truth):
    """Image-label prediction quality: exact-set accuracy, precision and recall over all
    (image, label) pairs of the predicted vs ground-truth label sets."""
    tp = sum(len(set(predicted[i]) & set(truth[i])) for i in truth)
    npred = sum(len(predicted[i]) for i in truth)
    ntrue = sum(len(truth[i]) for i in truth)
    return {'exact': sum(set(predicted[i]) == set(truth[i]) for i in truth) / len(truth),
            'precision': tp / npred if npred else None,
            'recall': tp / ntrue if ntrue else None, 'images': len(truth)}


SUMMARY_KEYS = ('mean_iou', 'per_class', 'pixel_accuracy', 'mean_accuracy', 'num_images',
                'num_pixels', 'gt_pixels', 'pred_pixels')
# Report rows: (label source, method, row title), in table order.
ROWS = (('predicted', 'decoder', 'TransferNet'),
        ('predicted', 'decoder_crf', 'TransferNet + CRF'),
        ('gt', 'decoder', 'TransferNet-GT'),
        ('gt', 'decoder_crf', 'TransferNet-GT + CRF'),
        ('predicted', 'no_transfer', 'No transfer: thresholded s'),
        ('gt', 'no_transfer', 'No transfer-GT: thresholded s'))


def row_key(source, method):
    return '%s_%s' % (source, method)


def result_rows(results):
    """metrics["results"]: {row_key: title, labels, method and the summary of the
    evaluation} from {(source, method): evaluation result}, for the ROWS present."""
    rows = {}
    for source, method, title in ROWS:
        if (source, method) in results:
            res = results[source, method]
            rows[row_key(source, method)] = dict(
                {k: res[k] for k in SUMMARY_KEYS}, title=title, labels=source, method=method)
    return rows


def write_metrics(path, metrics):
    """metrics.json (sorted keys), atomically."""
    write_text(path, json.dumps(metrics, indent=1, sort_keys=True) + '\n')


def _pct(value):
    return 'n/a' if value is None else '%.1f' % (100 * value)


def _foreground_share(result):
    pixels = result['pred_pixels']
    total = sum(pixels.values())
    return (total - pixels[score.BACKGROUND_NAME]) / total if total else None


def report_markdown(metrics, title, plots=(), figures=()):
    """Markdown report of a metrics dict with keys "results" (result_rows), "training"
    ({stage: timing record}), "labels" (label_accuracy), "config" (describe), optional
    "wall_seconds", "data" and "joint_seeds" ({seed: {row key: mIoU}}); `plots` and
    `figures` are paths relative to the report."""
    results = metrics['results']
    rows = [(title_, results[row_key(s, m)]) for s, m, title_ in ROWS
            if row_key(s, m) in results]
    cfg = metrics['config']
    lines = ['# %s' % title, '']
    if 'wall_seconds' in metrics:
        lines += ['Wall time of this run: %.0f s (work already done in an earlier run is '
                  'not counted).' % metrics['wall_seconds'], '']
    if 'data' in metrics:
        lines += ['Data: %s' % ', '.join('%s %s' % (k, v)
                                         for k, v in sorted(metrics['data'].items())), '']
    lines += ['Config "%s" (width %g, crop %d, seed %d, source fraction %g, classifier from '
              '%s).' % (cfg['name'], cfg['width'], cfg['crop'], cfg['seed'],
                        cfg['source_fraction'], cfg['classifier_init'] or 'scratch'), '',
              '| stage | iterations | batch x iter_size | Adam lr | train time (s) |',
              '|---|---|---|---|---|']
    for stage in solvers.STAGES:
        st, rec = cfg['stages'][stage], metrics['training'].get(stage, {})
        lines.append('| %s | %d | %d x %d | %g | %s |' % (
            stage, st['max_iter'], st['batch'], st['iter_size'], st['base_lr'],
            '%.0f' % rec['seconds'] if 'seconds' in rec else 'n/a'))
    lines += ['', '## Segmentation (comp6 IoU %, target classes + background)', '',
              score.markdown_table(collections.OrderedDict(rows)).rstrip('\n'), '',
              'Share of scored pixels predicted as foreground: ' + ', '.join(
                  '%s %s%%' % (name, _pct(_foreground_share(res))) for name, res in rows)
              + '.', '']
    lines += ['## Transfer vs no transfer', '',
              'No transfer = the densified attention s (Eq. 7) of the same forward, upsampled '
              'to the image, min-max normalised per label, foreground where > %g, labels '
              'combined by the largest score: what the labels and attention give without the '
              'decoder.' % NO_TRANSFER_THRESHOLD, '']
    for source, name in (('predicted', 'predicted labels'), ('gt', 'ground-truth labels')):
        dec, base = results.get(row_key(source, 'decoder')), results.get(
            row_key(source, 'no_transfer'))
        if dec and base:
            lines.append('- %s: decoder %s vs no transfer %s mIoU (%+.1f points)' % (
                name, _pct(dec['mean_iou']), _pct(base['mean_iou']),
                100 * (dec['mean_iou'] - base['mean_iou'])))
    if len(metrics.get('joint_seeds', {})) > 1:
        lines += ['', '## Joint-stage seeds (same stages 0 and 1; mIoU %)', '',
                  '| joint seed | TransferNet | no transfer | gain | TransferNet-GT | '
                  'no transfer-GT | gain |', '|---|---|---|---|---|---|---|']
        for seed, r in sorted(metrics['joint_seeds'].items(), key=lambda kv: int(kv[0])):
            cells = []
            for source in LABEL_SOURCES:
                dec, base = (r[row_key(source, m)] for m in ('decoder', 'no_transfer'))
                cells += [_pct(dec), _pct(base), '%+.1f' % (100 * (dec - base))]
            lines.append('| %s | %s |' % (seed, ' | '.join(cells)))
    if 'labels' in metrics:
        acc = metrics['labels']
        lines += ['', '## Image labels predicted by the stage-0 classifier', '',
                  'Over %d images: exact label set %s%%, precision %s%%, recall %s%% '
                  '(threshold %g, arg-max if none).' % (
                      acc['images'], _pct(acc['exact']), _pct(acc['precision']),
                      _pct(acc['recall']), inference.CLASSIFIER_THRESHOLD)]
    if plots:
        lines += ['', '## Training losses (parsed from the caffe train logs)', '']
        lines += ['![%s](%s)' % (os.path.splitext(os.path.basename(p))[0], p) for p in plots]
    if figures:
        lines += ['', '## Examples (image, attention alpha, densified attention s, '
                      'segmentation)', '']
        lines += ['![%s](%s)' % (os.path.splitext(os.path.basename(p))[0], p)
                  for p in figures]
    return '\n'.join(lines) + '\n'


def write_report(path, metrics, title, plots=(), figures=()):
    """report_markdown written to `path`, atomically."""
    write_text(path, report_markdown(metrics, title, plots, figures))
