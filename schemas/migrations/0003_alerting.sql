-- Alerting in the monitor (issue: alerts to on-call and the retraining trigger).
-- window_partials records whether a partial is final (its window closed in that partition),
-- so the alerter judges a window only once every live partition has closed it.
-- alert_state keeps the alerter's persisted state (rule trackers, retrain cooldowns) so a
-- restart neither loses nor repeats a page; the newest version of each key wins.

ALTER TABLE {db}.window_partials ADD COLUMN IF NOT EXISTS final UInt8 DEFAULT 1 AFTER version;

CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    key             String,
    state           String,
    version         UInt64,
    updated_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key;

ALTER TABLE {db}.alerts MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.retrain_jobs MODIFY SETTING non_replicated_deduplication_window = 1000;
