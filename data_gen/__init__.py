"""Synthetic click logs with known ground truth (docstring completed below)."""

from data_gen.generator import generate

__all__ = ["generate"]
