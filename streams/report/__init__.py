"""``distillwatch report``: one self-contained HTML page with the state of the student.

Three parts, kept apart: :mod:`queries` reads aggregates through the read-only SQL path and
computes what the page shows; :mod:`plots` draws figures from those numbers; :mod:`render`
lays them out as HTML with no external resources.
"""
