"""Runs inside Evidently's own virtualenv (see bench/peer.py); imports nothing of distillwatch.

    python peer_evidently_worker.py [--repeat N] PAIRS.csv CLASS [CLASS ...]

Reads the joined pairs distillwatch exported (slice columns, target, the student's predicted
class and its class probabilities) and computes Evidently's classification-quality report
(ClassificationPreset, multiclass with probabilities) on all pairs and on each slice value,
as one would to compare slices. Prints one JSON object: load and report seconds, reports run
(with ``--repeat N``, the reports are run N times and ``report_s`` is the fastest).
"""

from __future__ import annotations

import argparse
import json
import time

SLICE_COLUMNS = ("region", "device", "language")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="run the reports N times; the fastest counts")
    parser.add_argument("pairs", help="the joined pairs (CSV) distillwatch exported")
    parser.add_argument("classes", nargs="+", help="the configured intent classes")
    args = parser.parse_args()
    path, classes, repeat = args.pairs, args.classes, max(1, args.repeat)
    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    imported = time.perf_counter()
    frame = pd.read_csv(path, dtype={c: "string" for c in (*SLICE_COLUMNS, "target", "prediction")})
    loaded = time.perf_counter()
    definition = DataDefinition(
        classification=[MulticlassClassification(target="target", prediction_labels="prediction",
                                                  prediction_probas=classes)],
        categorical_columns=list(SLICE_COLUMNS),
    )

    def report(part: pd.DataFrame) -> dict:
        dataset = Dataset.from_pandas(part, data_definition=definition)
        return Report([ClassificationPreset()]).run(dataset, None).dict()

    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        reports = 0
        first = report(frame)
        reports += 1
        for column in SLICE_COLUMNS:
            for value in sorted(frame[column].dropna().unique()):
                report(frame[frame[column] == value])
                reports += 1
        runs.append(time.perf_counter() - began)
    print(json.dumps({
        "rows": len(frame), "reports": reports, "import_s": round(imported - started, 2),
        "load_s": round(loaded - imported, 2), "report_s": round(min(runs), 2),
        "report_runs_s": [round(r, 2) for r in runs], "first_report_metrics": len(first.get("metrics", [])),
    }))


if __name__ == "__main__":
    main()
