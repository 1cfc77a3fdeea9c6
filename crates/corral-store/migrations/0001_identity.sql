-- Identity and tenancy: tenants, users, API keys, access tokens, profiles, namespaces,
-- plus the per-tenant objects a tenant is created with (network `default`) and the
-- tables the tenant quotas count (clusters, hosts). Portable SQL: runs on SQLite and PostgreSQL.
-- Times are BIGINT milliseconds since the epoch; JSON is TEXT.

CREATE TABLE corral_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    workers BIGINT NOT NULL,
    max_clusters BIGINT NOT NULL,
    max_nodes BIGINT NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE TABLE users (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    description TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX users_by_id ON users (id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    description TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT,
    last_used_time BIGINT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_by_user ON api_keys (tenant_id, user_id, create_time);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_key ON access_tokens (api_key_id);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expire_time);

CREATE TABLE profiles (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE namespaces (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    config TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE networks (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE container_managers (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE clusters (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE hosts (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address)
);
