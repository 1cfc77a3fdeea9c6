-- Commissaire: hosts reached over SSH, clusters and their members, networks, container
-- managers and rolling operation records. Extends the minimal `hosts` and `clusters` tables
-- of 0001 (which the tenant quotas already count).

ALTER TABLE hosts ADD COLUMN status TEXT NOT NULL DEFAULT 'investigating';
ALTER TABLE hosts ADD COLUMN os TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN cpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN memory BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN space BIGINT NOT NULL DEFAULT 0;
-- Milliseconds since the epoch of the last contact; NULL = never.
ALTER TABLE hosts ADD COLUMN last_check BIGINT;
ALTER TABLE hosts ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN remote_user TEXT NOT NULL DEFAULT 'root';
-- The base64 SSH private key as registered, sealed with the server key (crypto.rs).
ALTER TABLE hosts ADD COLUMN ssh_key_sealed TEXT NOT NULL DEFAULT '';
-- SHA-256 of the registered base64 key: compares a re-registration without decrypting.
ALTER TABLE hosts ADD COLUMN ssh_key_digest TEXT NOT NULL DEFAULT '';
-- Host key fingerprint: pinned at registration, or recorded at first contact (TOFU).
ALTER TABLE hosts ADD COLUMN host_key_fingerprint TEXT;
ALTER TABLE hosts ADD COLUMN message TEXT NOT NULL DEFAULT '';
-- 1 once the bootstrap completed: only such hosts are watched and may be restored.
ALTER TABLE hosts ADD COLUMN bootstrapped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN ipv4 TEXT NOT NULL DEFAULT '';
-- 1 while the host is registered with its cluster's container manager.
ALTER TABLE hosts ADD COLUMN registered BIGINT NOT NULL DEFAULT 0;
CREATE INDEX hosts_by_status ON hosts (status);

ALTER TABLE clusters ADD COLUMN network TEXT NOT NULL DEFAULT 'default';
ALTER TABLE clusters ADD COLUMN container_manager TEXT NOT NULL DEFAULT '';

-- One row per member; the primary key makes a host a member of at most one cluster.
CREATE TABLE cluster_hosts (
    tenant_id TEXT NOT NULL,
    address TEXT NOT NULL,
    cluster TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address),
    FOREIGN KEY (tenant_id, cluster) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, address) REFERENCES hosts (tenant_id, address) ON DELETE CASCADE
);
CREATE INDEX cluster_hosts_by_cluster ON cluster_hosts (tenant_id, cluster, position);

-- The container manager token, sealed; options keep everything else.
ALTER TABLE container_managers ADD COLUMN token_sealed TEXT NOT NULL DEFAULT '';

-- The latest record of each operation type per cluster (deploy, upgrade, restart).
CREATE TABLE operations (
    tenant_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    version TEXT NOT NULL,
    max_parallel BIGINT NOT NULL,
    -- JSON arrays of addresses.
    members TEXT NOT NULL,
    done TEXT NOT NULL,
    in_process TEXT NOT NULL,
    failed TEXT NOT NULL,
    message TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    job_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, cluster, type),
    FOREIGN KEY (tenant_id, cluster) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE
);
