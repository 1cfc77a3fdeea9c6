-- Perspective instances and images (perspective.md 3.3, 3.5, 5, 6). Portable SQL.
--
-- Clouds, projects, flavors, networks and base images come from the server settings and the
-- drivers; only what tenants create lives here. An instance keeps a copy of its flavor and image
-- records (JSON), so it reads the same after the image is deleted or the settings change.

CREATE TABLE instances (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    real_id TEXT NOT NULL,
    cloud_id TEXT NOT NULL,
    cloud_type TEXT NOT NULL,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    flavor_id TEXT NOT NULL,
    -- JSON of the Flavor view.
    flavor TEXT NOT NULL,
    image_id TEXT NOT NULL,
    -- JSON of the Image view; `image_real_id` is the driver's reference to boot from.
    image TEXT NOT NULL,
    image_real_id TEXT NOT NULL,
    vcpus BIGINT NOT NULL,
    ram BIGINT NOT NULL,
    disk BIGINT NOT NULL,
    -- JSON: `{}` or a Keypair; an array of Networks; a Metadata.
    keypair TEXT NOT NULL,
    networks TEXT NOT NULL,
    metadata TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    -- Addresses joined with ','.
    addresses TEXT NOT NULL,
    fqdn TEXT NOT NULL,
    state TEXT NOT NULL,
    -- Milliseconds since the epoch.
    created BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX instances_by_project ON instances (tenant_id, project_id);
CREATE INDEX instances_by_image ON instances (tenant_id, image_id);
-- The SQL read model refreshes from the rows changed since its last look.
CREATE INDEX instances_by_update ON instances (tenant_id, last_updated);

-- Who did what to an instance, and how it ended (Corral addition). Goes with the instance. An
-- action's event has the id of the job that carries it out, which completes it.
CREATE TABLE instance_events (
    tenant_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    finished BIGINT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    -- accepted, succeeded, failed
    outcome TEXT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (tenant_id, instance_id, id)
);
CREATE INDEX instance_events_by_time ON instance_events (tenant_id, instance_id, at);

CREATE TABLE images (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    real_id TEXT NOT NULL,
    cloud_id TEXT NOT NULL,
    cloud_type TEXT NOT NULL,
    name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    -- JSON array of project ids that may use the image.
    project_ids TEXT NOT NULL,
    state TEXT NOT NULL,
    checksum TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
