"""Evaluation: measuring the model on labelled data (ViF-Bench, calibration sets, the audit
trail's reviews) offline, away from the serving path; the analysis path never imports it."""
