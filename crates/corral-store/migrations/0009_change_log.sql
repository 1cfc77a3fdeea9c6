-- The change log (docs/events.md): every committed change of a tenant-owned object, in
-- revision order. `change_head` is one row: the last revision handed out (taking it is a row
-- lock held to commit, so revisions become visible in order on PostgreSQL too) and the last
-- revision pruned by retention (a watcher resuming before it answers 410).
CREATE TABLE change_head (
    id INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
);
INSERT INTO change_head (id, revision, pruned_through) VALUES (1, 0, 0);

CREATE TABLE change_log (
    revision BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    actor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX change_log_by_tenant ON change_log (tenant_id, revision);
CREATE INDEX change_log_by_time ON change_log (time);
