"""The synthetic MangaAssist world and the reference guide's failure scenarios.

- ``world``: catalog with churn, slices, intent mix, one request at a time
- ``prompts``: customer text whose words carry the intent (typos, mixing, multi-intent)
- ``models``: simulated teacher and student (accuracy, confidence, latency, facts)
- ``scenarios``: the injectors (onset, target slice, expected rule); ``generate``: a run
- ``truth``: the truth file and the check of alerts against it; ``check``: offline alerts
- ``review``: the human review queue; ``legacy`` and ``traffic``: the first demo's world
  (``traffic.World``, ``TrafficConfig``, ``Regression``, ``healthy`` stay as they were)
"""
