"""Retraining in the monitor: the trigger behind retrain rules and the job launcher (DESIGN §9)."""
