-- Streaming evaluator state (issue: shadow pipeline).
-- shadow_evaluations gains what is needed to rebuild a request's evaluation when a late
-- label arrives after its window closed; window_partials keeps each partition's mergeable
-- window state (merged across partitions into window_metrics by the sink).

ALTER TABLE {db}.shadow_evaluations
    ADD COLUMN IF NOT EXISTS teacher_present UInt8 AFTER student_version,
    ADD COLUMN IF NOT EXISTS student_present UInt8 AFTER teacher_present,
    ADD COLUMN IF NOT EXISTS teacher_top2 Nullable(Float32) AFTER teacher_top1,
    ADD COLUMN IF NOT EXISTS teacher_checkable UInt8 AFTER student_correct,
    ADD COLUMN IF NOT EXISTS student_checkable UInt8 AFTER teacher_checkable,
    ADD COLUMN IF NOT EXISTS teacher_unknown_entity UInt8 AFTER student_unknown_entity,
    ADD COLUMN IF NOT EXISTS teacher_all_claims_correct UInt8 AFTER teacher_unknown_entity,
    ADD COLUMN IF NOT EXISTS student_all_claims_correct UInt8 AFTER teacher_all_claims_correct,
    ADD COLUMN IF NOT EXISTS replica_answered UInt8 AFTER student_all_claims_correct,
    ADD COLUMN IF NOT EXISTS replica_intent LowCardinality(String) AFTER replica_answered,
    ADD COLUMN IF NOT EXISTS production_reference LowCardinality(String) AFTER reference_source,
    ADD COLUMN IF NOT EXISTS names_entity UInt8 AFTER retrieval_miss,
    ADD COLUMN IF NOT EXISTS new_title UInt8 AFTER title_age_days,
    ADD COLUMN IF NOT EXISTS labels String AFTER multi_intent;

ALTER TABLE {db}.shadow_evaluations
    ADD INDEX IF NOT EXISTS request_id_bloom request_id TYPE bloom_filter(0.01) GRANULARITY 4;

CREATE TABLE IF NOT EXISTS {db}.window_partials
(
    window_s        UInt32,
    window_start    DateTime('UTC'),
    slice           String,
    part            String,
    state           String,
    version         UInt64,
    written_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_s, window_start, slice, part)
SETTINGS non_replicated_deduplication_window = 10000;


-- The sink's inserts carry deduplication tokens (the Kafka coordinates of the message they
-- come from): a message delivered twice after a crash is stored once.
ALTER TABLE {db}.shadow_evaluations MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {db}.shadow_payloads MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {db}.window_metrics MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {db}.dead_letters MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {db}.distill_examples MODIFY SETTING non_replicated_deduplication_window = 10000;
