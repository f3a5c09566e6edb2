"""Learning-curve analysis: phases, the sweet spot and a diagnosis (analysis), the reasons behind the
diagnosis (diagnosis) and the smoothing and noise arithmetic both share (curvemath)."""

from __future__ import annotations

from epochpilot.core.curves.analysis import DIAGNOSES, PHASES, CurveReport, Phase, analyze

__all__ = ["DIAGNOSES", "PHASES", "CurveReport", "Phase", "analyze"]
