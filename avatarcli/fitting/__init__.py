"""Fitting: a body model to 1..N photos of one person (SMPLify-X-style), with quality scores."""

from __future__ import annotations

from avatarcli.fitting.optimize import FitSettings, ViewInput, fit_perceptions, fit_photo, fit_views
from avatarcli.fitting.result import Fit, load_fit, save_fit

__all__ = [
    "Fit",
    "FitSettings",
    "ViewInput",
    "fit_perceptions",
    "fit_photo",
    "fit_views",
    "load_fit",
    "save_fit",
]
