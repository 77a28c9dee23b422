-- Payload retention counts from when a row was stored, not from its event time: a replayed
-- or back-filled log older than the TTL kept none of its sampled payloads (found by the
-- payload-sampling scenario through the monitor).
ALTER TABLE {db}.shadow_payloads MODIFY TTL toDateTime(inserted_at) + INTERVAL 14 DAY;
