-- The slice map as one JSON string per row, dictionary-encoded: a forensic query that groups
-- requests by their combination of slice attributes reads a small LowCardinality column
-- instead of the map's key and value arrays and hashing them (latency-by-slice over 10M
-- rows: 1.07 s -> 0.62 s, bench/bench_forensics.py). Parts written before this migration
-- compute it on read; `ALTER TABLE shadow_evaluations MATERIALIZE COLUMN slice_json` stores it.
ALTER TABLE {db}.shadow_evaluations
    ADD COLUMN IF NOT EXISTS slice_json LowCardinality(String) MATERIALIZED toJSONString(slice);
