-- CDAP applications (cdap-v3.md 3): an app of a namespace and its versions. Portable SQL.
-- An app row exists exactly while it has at least one version (the last version's delete
-- deletes the app). Deleting a namespace cascades to its apps, and an app to its versions.

CREATE TABLE apps (
    tenant_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, name),
    FOREIGN KEY (tenant_id, namespace) REFERENCES namespaces (tenant_id, name) ON DELETE CASCADE
);

CREATE TABLE app_versions (
    tenant_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of the version's Service objects, as given (defaults filled in).
    spec TEXT NOT NULL,
    -- Milliseconds since the epoch of the creation or last overwrite.
    created BIGINT NOT NULL,
    -- Per app, increasing with every creation or overwrite: ordering of the versions list
    -- (oldest first) and the current version (the highest).
    seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, app, version),
    FOREIGN KEY (tenant_id, namespace, app) REFERENCES apps (tenant_id, namespace, name) ON DELETE CASCADE
);
CREATE INDEX app_versions_by_seq ON app_versions (tenant_id, namespace, app, seq);
