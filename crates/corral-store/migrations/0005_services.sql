-- CDAP services (cdap-v3.md 1.4, 4, 8): the durable part of supervision. Portable SQL.
--
-- A service's processes live only in the server that supervises them (its `node`); the store
-- keeps what must survive that server: the desired state, the instance count set by
-- `PUT .../instances`, the runtime arguments of the run to restart, the run records and the
-- route configs. Rows of a version go with it (ON DELETE CASCADE); route configs go with the app.

CREATE TABLE service_states (
    tenant_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    service TEXT NOT NULL,
    -- Set by PUT .../instances; NULL: the spec's count.
    requested BIGINT,
    -- 'running' after a start, 'stopped' after a stop: what a restarted server restores.
    desired TEXT NOT NULL,
    -- JSON object of the runtime arguments of the last start.
    runtime_args TEXT NOT NULL,
    -- The server (data dir's node id) that supervises the service while it runs.
    node TEXT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, app, version, service),
    FOREIGN KEY (tenant_id, namespace, app, version)
        REFERENCES app_versions (tenant_id, namespace, app, version) ON DELETE CASCADE
);
CREATE INDEX service_states_by_node ON service_states (node, desired);

CREATE TABLE service_runs (
    tenant_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    service TEXT NOT NULL,
    node TEXT NOT NULL,
    -- Seconds since the epoch; end_time is NULL while the run is active.
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    -- STARTING, RUNNING, STOPPING (active); KILLED, FAILED (ended).
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, namespace, app, version)
        REFERENCES app_versions (tenant_id, namespace, app, version) ON DELETE CASCADE
);
CREATE INDEX service_runs_by_service ON service_runs (tenant_id, namespace, app, version, service, start_time);
-- At most one active run per service and version: a second start, even on another replica, is
-- refused by the store itself.
CREATE UNIQUE INDEX service_runs_one_active ON service_runs (tenant_id, namespace, app, version, service)
    WHERE end_time IS NULL;
CREATE INDEX service_runs_active_by_node ON service_runs (node) WHERE end_time IS NULL;

CREATE TABLE route_configs (
    tenant_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    service TEXT NOT NULL,
    -- JSON object version -> percentage, summing to 100.
    config TEXT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, app, service),
    FOREIGN KEY (tenant_id, namespace, app) REFERENCES apps (tenant_id, namespace, name) ON DELETE CASCADE
);
