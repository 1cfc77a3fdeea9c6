-- Durable jobs (design §5): every asynchronous action is a row, claimed with a lease that a
-- heartbeat renews, re-queued when the lease lapses, failed when its deadline passes.
-- Completed steps are recorded so a resumed job skips them. Singletons (the health watcher)
-- hold a lease row with a fencing generation.

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    principal TEXT NOT NULL,
    state TEXT NOT NULL,
    -- 1 when the job takes one of its tenant's `workers` slots while it runs.
    uses_slot BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    run_after BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX jobs_ready ON jobs (state, run_after);
CREATE INDEX jobs_by_subject ON jobs (tenant_id, kind, subject);

CREATE TABLE job_steps (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    output TEXT NOT NULL,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, step)
);

CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, at);

CREATE TABLE singletons (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    generation BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
