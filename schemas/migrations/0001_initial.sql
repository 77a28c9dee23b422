-- distillwatch schema v1: the tables of DESIGN §7.
-- {db} is replaced by the configured database. Every statement is idempotent.
-- Plain MergeTree tables set non_replicated_deduplication_window so that a retried insert
-- carrying the same insert_deduplication_token is stored once (at-least-once delivery).

CREATE DATABASE IF NOT EXISTS {db};

-- One row per request. ReplacingMergeTree(version): a late label re-emits the row with a
-- higher version; read with FINAL (or argMax) for the current state.
CREATE TABLE IF NOT EXISTS {db}.shadow_evaluations
(
    request_id              String,
    ts                      DateTime64(3, 'UTC'),
    slice                   Map(LowCardinality(String), String),
    prompt_hash             FixedString(64),
    teacher_model           LowCardinality(String),
    teacher_version         LowCardinality(String),
    student_model           LowCardinality(String),
    student_version         LowCardinality(String),
    teacher_answered        UInt8,
    student_answered        UInt8,
    teacher_error           LowCardinality(String),
    student_error           LowCardinality(String),
    reference_intent        LowCardinality(String),
    reference_source        LowCardinality(String),
    teacher_intent          LowCardinality(String),
    student_intent          LowCardinality(String),
    teacher_top1            Nullable(Float32),
    student_top1            Nullable(Float32),
    student_top2            Nullable(Float32),
    student_margin          Nullable(Float32),
    teacher_correct         Nullable(UInt8),
    student_correct         Nullable(UInt8),
    teacher_fact_error      UInt8,
    student_fact_error      UInt8,
    teacher_wrong_claims    UInt16,
    student_wrong_claims    UInt16,
    copied_claims           UInt16,
    student_unknown_entity  UInt8,
    retrieval_miss          UInt8,
    fallback                UInt8,
    fallback_naive          UInt8,
    cost_usd                Float64,
    teacher_latency_ms      Nullable(Float32),
    student_latency_ms      Nullable(Float32),
    title_age_days          Nullable(Float32),
    freshness               LowCardinality(String),
    dataset_age_days        Nullable(Float32),
    multi_intent            UInt8,
    late                    UInt8,
    kafka_partition         Int32,
    kafka_offset            Int64,
    version                 UInt64,
    inserted_at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (toStartOfHour(ts), request_id);

-- Sampled payloads: redacted text only (DESIGN §8). Short TTL.
CREATE TABLE IF NOT EXISTS {db}.shadow_payloads
(
    request_id      String,
    ts              DateTime64(3, 'UTC'),
    sample_reason   LowCardinality(String),
    slice           Map(LowCardinality(String), String),
    prompt_redacted String,
    teacher_answer_redacted String,
    student_answer_redacted String,
    teacher_probs   Map(LowCardinality(String), Float32),
    student_probs   Map(LowCardinality(String), Float32),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (toStartOfHour(ts), request_id)
TTL toDateTime(ts) + INTERVAL 14 DAY;

-- One row per window × slice × metric; a re-emitted window carries a higher version.
CREATE TABLE IF NOT EXISTS {db}.window_metrics
(
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    window_s        UInt32,
    slice           String,
    metric          LowCardinality(String),
    value           Nullable(Float64),
    numerator       Nullable(Float64),
    denominator     Nullable(Float64),
    support         UInt64,
    ci_low          Nullable(Float64),
    ci_high         Nullable(Float64),
    version         UInt64,
    emitted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_s, window_start, slice, metric);

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id        String,
    fingerprint     String,
    rule            LowCardinality(String),
    slice           String,
    status          LowCardinality(String),
    severity        LowCardinality(String),
    metric          LowCardinality(String),
    value           Nullable(Float64),
    threshold       Nullable(Float64),
    window_start    DateTime('UTC'),
    window_s        UInt32,
    starts_at       DateTime64(3, 'UTC'),
    ends_at         Nullable(DateTime64(3, 'UTC')),
    evidence        String,
    created_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (fingerprint, alert_id, status);

CREATE TABLE IF NOT EXISTS {db}.alert_deliveries
(
    alert_id        String,
    target          String,
    attempt         UInt16,
    status          LowCardinality(String),
    http_status     Nullable(UInt16),
    error           String,
    attempted_at    DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (alert_id, target, attempt)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.retrain_jobs
(
    job_id          String,
    model           LowCardinality(String),
    status          LowCardinality(String),
    request         String,
    launcher        LowCardinality(String),
    output_dir      String,
    metrics         String,
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY job_id;

CREATE TABLE IF NOT EXISTS {db}.model_versions
(
    model           LowCardinality(String),
    model_version   String,
    job_id          String,
    path            String,
    promotion_score Nullable(Float64),
    metrics         String,
    created_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model, model_version);

-- Bad input: raw bytes are truncated, the sha256 covers the whole message.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    topic           LowCardinality(String),
    partition       Int32,
    offset          Int64,
    error           String,
    sha256          FixedString(64),
    raw_truncated   String,
    raw_size        UInt64,
    received_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset);

CREATE TABLE IF NOT EXISTS {db}.distill_examples
(
    request_id          String,
    ts                  DateTime64(3, 'UTC'),
    slice               Map(LowCardinality(String), String),
    prompt_redacted     String,
    teacher_probs       Map(LowCardinality(String), Float32),
    reference_intent    LowCardinality(String),
    reference_source    LowCardinality(String),
    teacher_supported   UInt8,
    teacher_fact_error  UInt8,
    evidence_covered    UInt8,
    sample_reason       LowCardinality(String),
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), request_id);
