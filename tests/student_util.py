"""Helpers shared by the MLP student's tests."""

from __future__ import annotations

import torch


def scramble_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Move every weight far from its initialisation (so every block moves the logit), keeping the
    padding rows at zero as training does; returns the model in eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for emb in getattr(model, "embeddings", {}).values():
            if emb.padding_idx is not None:
                emb.weight[emb.padding_idx].zero_()
    return model.eval()
