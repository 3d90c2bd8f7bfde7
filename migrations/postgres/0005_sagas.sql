-- Saga instances and their step history.
--
-- One row per saga, written in the same transaction as the order events a
-- step produces. `revision` goes up on every write (a step's outcome, a
-- claim by a worker, an operator's retry): a writer names the revision it
-- read, so a process whose lease ran out cannot overwrite the work of the
-- one that took over.
CREATE TABLE saga_instances (
    saga_id         UUID        PRIMARY KEY,
    saga_type       TEXT        NOT NULL,
    -- The order the saga fulfils: one saga per order and type.
    correlation_id  UUID        NOT NULL,
    -- What the saga does next (a step or a compensation), or "-".
    current_step    TEXT        NOT NULL,
    saga_data       JSONB       NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN
                        ('running', 'compensating', 'completed', 'compensated', 'needs_attention')),
    revision        BIGINT      NOT NULL,
    -- Failed rounds of the current step or compensation.
    attempts        INTEGER     NOT NULL DEFAULT 0,
    -- When a worker may take it up (after a back-off).
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT saga_instances_one_per_order UNIQUE (saga_type, correlation_id)
);
-- The worker's question: which active sagas are due?
CREATE INDEX saga_instances_due ON saga_instances (next_attempt_at)
    WHERE status IN ('running', 'compensating');
CREATE INDEX saga_instances_by_status ON saga_instances (status, saga_id);

-- What happened at each step: actions, compensations, hook verdicts, retries.
CREATE TABLE saga_steps (
    record_id  UUID        PRIMARY KEY,
    saga_id    UUID        NOT NULL REFERENCES saga_instances (saga_id) ON DELETE CASCADE,
    step       TEXT        NOT NULL,
    phase      TEXT        NOT NULL,
    outcome    TEXT        NOT NULL,
    detail     TEXT,
    attempt    INTEGER     NOT NULL,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX saga_steps_by_saga ON saga_steps (saga_id, record_id);
