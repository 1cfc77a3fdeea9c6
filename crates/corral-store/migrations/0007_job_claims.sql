-- Claiming a job must not read every queued job (100,000 queued launches of one tenant are
-- normal): the queue is read in claim order straight from an index, and each tenant's running
-- slotted jobs are counted from another.
CREATE INDEX jobs_claim_order ON jobs (state, run_after, created_at, id);
-- Its prefix: one index less to maintain on every job insert.
DROP INDEX jobs_ready;
CREATE INDEX jobs_running_by_tenant ON jobs (tenant_id, state, uses_slot);
-- The reaper's look for jobs past their deadline.
CREATE INDEX jobs_overdue ON jobs (state, deadline);
