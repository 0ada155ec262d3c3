"""Delivery: what we push to other systems over HTTP: outcomes to platforms as signed
webhooks, and verdicts sent to review to Label Studio (`label_studio`, the client the review
console uses; `consumers/review_console.py` is the loop).

A callback URL is untrusted input (a job's caller chose it), so the guard decides before any
connection whether a URL may be called at all (`callbacks`), and the sender signs, retries on
a bounded schedule and reads a bounded answer (`webhooks`). Nothing here knows about Kafka:
the loop that reads the verdict topics is `consumers/webhook_loop.py`.
"""
