"""Alerts: lifecycle and outbox (alerter, outbox) and delivery to on-call targets.

Delivery modules: :mod:`notification` (what is sent), :mod:`targets` (where, and the request
each target expects), :mod:`signing` (Standard Webhooks signatures and the receiver's
verifier), :mod:`policy` (retry backoff), :mod:`delivery` (one attempt, or all of them).
Nothing is imported here, so ``distillwatch.settings`` can import the config models cheaply.
"""
