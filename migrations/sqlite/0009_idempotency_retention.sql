-- Idempotency keys are kept for a window (COMMERCE_IDEMPOTENCY_WINDOW_SECS,
-- 24 h) and then deleted, oldest first: the purger finds them by age.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
