"""Ablations (transfernet.ablation) on real tiny deploy nets, evaluation.ablate on a run folder
and the tools/ablate.py command line."""

import os
import shutil
import subprocess
import sys

import caffe
import numpy as np
import pytest
from tiny_weights import REPO, SEG_MODEL, make_image

from data_prep import builtin
from transfernet import ablation, config, evaluation, experiment, fileio, inference

BASELINE_MODEL = os.path.join(REPO, config.TINY.layout.model("baselinenet_deploy"))


def test_queries_shift_the_labels_of_multi_label_images_only():
    assert ablation.queries([3, 8, 12], "swapped_labels").tolist() == [8, 12, 3]
    assert ablation.queries([3], "swapped_labels").tolist() == [3]
    assert ablation.queries([3, 8], "uniform_attention").tolist() == [3, 8]


def test_uniform_attention_makes_alpha_uniform_and_s_label_independent(weights):
    net = inference.load_net(SEG_MODEL, weights["seg"])
    assert ablation.applicable(net) == ["uniform_attention", "swapped_labels"]
    image = make_image(80, 100, seed=4)
    _, _, alpha, s = inference.forward(net, image, [2, 9])
    assert not np.allclose(s[0], s[1])  # intact: the attention depends on the label
    ablation.apply(net, "uniform_attention")
    _, _, alpha, s = inference.forward(net, image, [2, 9])
    np.testing.assert_allclose(alpha, 1.0 / alpha[0].size, rtol=1e-5)
    np.testing.assert_allclose(s[0], s[1], rtol=1e-5)
    with pytest.raises(ValueError, match="s_fc"):
        ablation.apply(net, "no_class_map")


def test_no_class_map_gives_baselinenet_one_map_for_every_image_and_label():
    net = caffe.Net(BASELINE_MODEL, caffe.TEST)  # fillers: Gaussian s_fc, zero bias
    assert ablation.applicable(net) == ["no_class_map"]
    net.params["s_fc"][1].data[...] = np.random.RandomState(0).randn(
        *net.params["s_fc"][1].data.shape
    )
    ablation.apply(net, "no_class_map")
    maps = [inference.forward(net, make_image(64, 64, seed=k), [k + 1])[3] for k in range(3)]
    for m in maps[1:]:
        np.testing.assert_array_equal(m, maps[0])
    side = int(np.sqrt(net.params["s_fc"][1].data.size))
    np.testing.assert_allclose(maps[0][0], net.params["s_fc"][1].data.reshape(side, side))
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation.apply(net, "dropout")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, builtin_lmdbs, weights):
    """A run folder of the tiny config whose final joint snapshot holds the seeded random
    weights (no training needed to ablate), and a val set of multi- and single-label images."""
    folder = tmp_path_factory.mktemp("ablate")
    source, target = builtin_lmdbs
    run = experiment.prepare(
        str(folder / "run"), config.TINY.with_data(source=source, target=target), 0
    )
    os.makedirs(os.path.dirname(experiment.final_snapshot(run, "joint")), exist_ok=True)
    shutil.copy(weights["seg"], experiment.final_snapshot(run, "joint"))
    builtin.generate(
        str(folder / "data"), seed=5, source_images=0, target_train=0, target_val=6, workers=1
    )
    voc_root = str(folder / "data" / "VOCdevkit" / "VOC2012")
    return run, voc_root, evaluation.voc_eval_set(voc_root, target)


def test_ablate_scores_each_ablation_against_the_intact_net(trained_run, weights):
    run, _, val = trained_run
    rows = evaluation.ablate(run, val, progress=lambda m: None)
    labels = evaluation.image_labels(run, val, "gt")
    multi = [i for i in val.ids if len(labels[i]) > 1]
    assert 0 < len(multi) < len(val.ids)
    assert sorted(rows) == ["swapped_labels", "uniform_attention"]
    assert rows["uniform_attention"]["images"] == len(val.ids)
    assert rows["swapped_labels"]["images"] == len(multi)
    # the uniform-attention maps are those of a net whose att_score is zeroed
    net = inference.load_net(SEG_MODEL, weights["seg"])
    ablation.apply(net, "uniform_attention")
    folder = experiment.pred_dir(run, "gt", "decoder_uniform_attention")
    for i in val.ids:
        image = fileio.read_image(os.path.join(val.image_dir, i + ".jpg"))
        expected = inference.segment(net, image, labels[i]).labels
        np.testing.assert_array_equal(
            fileio.read_label_png(os.path.join(folder, i + ".png")), expected
        )
    # swapped: only the multi-label images are segmented, each label with another's query
    swapped = experiment.pred_dir(run, "gt", "decoder_swapped_labels")
    assert sorted(os.listdir(swapped)) == sorted(i + ".png" for i in multi)
    for r in rows.values():
        for side in ("intact", "ablated"):
            assert 0 <= r[side]["mean_iou"] <= 1 and "background" in r[side]["per_class"]


def test_open_run_rebuilds_the_run_of_a_folder(trained_run, tmp_path):
    run = trained_run[0]
    assert experiment.open_run(run.dir) == run
    with pytest.raises(ValueError, match="no config.json"):
        experiment.open_run(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        experiment.open_run(str(tmp_path))


def test_cli_writes_the_table_and_refuses_a_folder_that_is_not_a_run(trained_run, tmp_path):
    run, voc_root, _ = trained_run
    tool = os.path.join(REPO, "tools", "ablate.py")
    res = subprocess.run(
        [sys.executable, tool, run.dir, "--voc-root", voc_root],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    assert "| uniform_attention | 6 |" in res.stdout
    assert os.path.isfile(os.path.join(run.dir, "ablations.json"))
    res = subprocess.run(
        [sys.executable, tool, str(tmp_path), "--voc-root", voc_root],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 2 and "not a run folder" in res.stderr
    assert "Traceback" not in res.stderr
