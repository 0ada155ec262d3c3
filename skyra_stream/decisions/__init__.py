"""Decisions: what a verdict says and what the platform does with it.

Building verdicts and dead letters from the model's answer, the tenant's policy, reuse of
verdicts for content already seen, review events and the audit trail they become, review
tasks (a verdict as a Label Studio task, an annotation as a review event), training
records exported from reviews, and the evidence sheets people look at.
"""
