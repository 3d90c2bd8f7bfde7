-- Saga instances and their step history (see the PostgreSQL migration for
-- the meaning of each column). Times the worker compares are Unix
-- microseconds.
CREATE TABLE saga_instances (
    saga_id         BLOB    PRIMARY KEY,
    saga_type       TEXT    NOT NULL,
    correlation_id  BLOB    NOT NULL,
    current_step    TEXT    NOT NULL,
    saga_data       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                        ('running', 'compensating', 'completed', 'compensated', 'needs_attention')),
    revision        INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (saga_type, correlation_id)
);
CREATE INDEX saga_instances_due ON saga_instances (next_attempt_at)
    WHERE status IN ('running', 'compensating');
CREATE INDEX saga_instances_by_status ON saga_instances (status, saga_id);

CREATE TABLE saga_steps (
    record_id  BLOB    PRIMARY KEY,
    saga_id    BLOB    NOT NULL REFERENCES saga_instances (saga_id) ON DELETE CASCADE,
    step       TEXT    NOT NULL,
    phase      TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT,
    attempt    INTEGER NOT NULL,
    at         TEXT    NOT NULL
);
CREATE INDEX saga_steps_by_saga ON saga_steps (saga_id, record_id);
