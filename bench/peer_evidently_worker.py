"""Runs inside Evidently's own virtualenv (see bench/peer.py); imports nothing of distillwatch.

    python peer_evidently_worker.py PAIRS.csv CLASS [CLASS ...]

Reads the joined pairs distillwatch exported (slice columns, target, the student's predicted
class and its class probabilities) and computes Evidently's classification-quality report
(ClassificationPreset, multiclass with probabilities) on all pairs and on each slice value,
as one would to compare slices. Prints one JSON object: load and report seconds, reports run.
"""

from __future__ import annotations

import json
import sys
import time

SLICE_COLUMNS = ("region", "device", "language")


def main() -> None:
    path, classes = sys.argv[1], sys.argv[2:]
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

    reports = 0
    first = report(frame)
    reports += 1
    for column in SLICE_COLUMNS:
        for value in sorted(frame[column].dropna().unique()):
            report(frame[frame[column] == value])
            reports += 1
    done = time.perf_counter()
    print(json.dumps({
        "rows": len(frame), "reports": reports, "import_s": round(imported - started, 2),
        "load_s": round(loaded - imported, 2), "report_s": round(done - loaded, 2),
        "first_report_metrics": len(first.get("metrics", [])),
    }))


if __name__ == "__main__":
    main()
