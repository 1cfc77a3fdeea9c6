-- The request that started an action, so an instance's history entry can be followed to the
-- request's log lines (and, through the job's stored principal, to the job's own lines).
ALTER TABLE instance_events ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
