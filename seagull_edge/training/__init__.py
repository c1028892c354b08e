"""Training: data synthesis (distortions, ROIs, FR-IQA labels), dataset readers, train loop, metrics.

Needs the ``train`` extra (torch, timm, scikit-image, piq).
"""
