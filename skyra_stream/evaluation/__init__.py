"""Evaluation: measuring the model on labelled data (ViF-Bench) offline, away from the
serving path; the analysis path never imports it."""
