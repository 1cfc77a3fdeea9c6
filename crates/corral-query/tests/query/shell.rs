//! The Perspective shell's own queries, as its `Find*Request` classes generate them (qualified
//! `table.column` items, `inner`/`left join`, named placeholders named after the column they
//! filter), read the way its repositories read a result: every value looked up by name in
//! `columnName`. The corpus also holds these statements with their whole results.

use serde_json::{Value as J, json};

use crate::fixture;

/// `show instances`: four tables, two of them left-joined.
pub const SHOW_INSTANCES: &str = "select instances.id, instances.real_id, instances.name, projects.id, projects.name, \
instances.cloud_id, instances.cloud_type, images.name, flavors.name, instances.addresses, instances.state, \
instances.last_updated from instances inner join projects on instances.project_id = projects.id left join flavors \
on instances.flavor_id = flavors.id and instances.project_id = flavors.project_id left join images on \
instances.image_id = images.id where instances.state = :instances.state: or instances.state = :instances.state1: \
order by instances.name asc";

/// `show flavors`.
pub const SHOW_FLAVORS: &str = "select flavors.id, flavors.name, projects.name, flavors.vcpus, flavors.ram, \
flavors.root_disk, flavors.ephemeral_disk from flavors inner join projects on flavors.project_id = projects.id \
where projects.cloud_type = :projects.cloud_type: order by flavors.name asc";

/// `show images`: three tables.
pub const SHOW_IMAGES: &str = "select images.id, images.real_id, images.name, images.cloud_type, images.state, \
images.last_updated, projects.id, projects.name from images inner join project_images on images.id = \
project_images.image_id inner join projects on projects.id = project_images.project_id where images.state = \
:images.state: order by images.name asc";

/// `show networks`: three tables, the last joined on two columns.
pub const SHOW_NETWORKS: &str = "select networks.id, networks.name, projects.name, networks.state, \
networks.is_shared, network_subnets.cidr from networks inner join projects on networks.project_id = projects.id \
inner join network_subnets on network_subnets.project_id = projects.id and network_subnets.network_id = \
networks.id where projects.name regexp :projects.name: order by networks.name asc";

pub const SHOW_INSTANCES_PARAMS: &str =
    r#"[{"name": "instances.state", "value": "launched"}, {"name": "instances.state1", "value": "error"}]"#;
pub const SHOW_FLAVORS_PARAMS: &str = r#"[{"name": "projects.cloud_type", "value": "mock"}]"#;
pub const SHOW_IMAGES_PARAMS: &str = r#"[{"name": "images.state", "value": "saved"}]"#;
pub const SHOW_NETWORKS_PARAMS: &str = r#"[{"name": "projects.name", "value": "^project-"}]"#;

/// Runs one statement and returns its rows as the shell sees them: for each name it reads, the
/// value of the (single) column of that name.
fn read(sql: &str, params: &str, names: &[&str]) -> Vec<J> {
    let db = fixture::db();
    let mut results = fixture::run(&db, sql, &fixture::params(params), &fixture::limits());
    assert_eq!(results.len(), 1, "{sql}");
    let r = results.remove(0);
    let got = serde_json::to_value(&r).unwrap();
    assert_eq!(got["status"], "success", "{sql}: {got}");
    let columns = &r.data.column_name;
    // Named as written, so a name never stands for two columns.
    assert_eq!(columns, names, "{sql}");
    r.data
        .row
        .iter()
        .map(|row| {
            let values = serde_json::to_value(&row.value).unwrap();
            let mut out = serde_json::Map::new();
            for name in names {
                let at: Vec<usize> = (0..columns.len()).filter(|&i| columns[i] == *name).collect();
                assert_eq!(at.len(), 1, "{sql}: column {name} in {columns:?}");
                out.insert((*name).to_string(), values[at[0]].clone());
            }
            J::Object(out)
        })
        .collect()
}

#[test]
fn show_instances_reads_qualified_columns() {
    // InstancesRepositoryImpl.findInstances reads these names.
    let names = [
        "instances.id",
        "instances.real_id",
        "instances.name",
        "projects.id",
        "projects.name",
        "instances.cloud_id",
        "instances.cloud_type",
        "images.name",
        "flavors.name",
        "instances.addresses",
        "instances.state",
        "instances.last_updated",
    ];
    let t = "2026-01-01T00:00:00Z";
    assert_eq!(
        read(SHOW_INSTANCES, SHOW_INSTANCES_PARAMS, &names),
        vec![
            json!({"instances.id": "a4", "instances.real_id": "r-a4", "instances.name": "orphan",
                   "projects.id": "p3", "projects.name": "other", "instances.cloud_id": "c2",
                   "instances.cloud_type": "openstack", "images.name": "snap", "flavors.name": null,
                   "instances.addresses": "", "instances.state": "error", "instances.last_updated": t}),
            json!({"instances.id": "a1", "instances.real_id": "r-a1", "instances.name": "web-1",
                   "projects.id": "p1", "projects.name": "project-one", "instances.cloud_id": "c1",
                   "instances.cloud_type": "mock", "images.name": "ubuntu", "flavors.name": "small",
                   "instances.addresses": "10.0.0.1", "instances.state": "launched", "instances.last_updated": t}),
            json!({"instances.id": "a2", "instances.real_id": "r-a2", "instances.name": "web-2",
                   "projects.id": "p1", "projects.name": "project-one", "instances.cloud_id": "c1",
                   "instances.cloud_type": "mock", "images.name": "ubuntu", "flavors.name": "large",
                   "instances.addresses": "10.0.0.2,10.0.1.2", "instances.state": "launched",
                   "instances.last_updated": t}),
        ]
    );
}

#[test]
fn show_flavors_reads_qualified_columns() {
    // ProjectsRepositoryImpl.findFlavors.
    let names = [
        "flavors.id",
        "flavors.name",
        "projects.name",
        "flavors.vcpus",
        "flavors.ram",
        "flavors.root_disk",
        "flavors.ephemeral_disk",
    ];
    assert_eq!(
        read(SHOW_FLAVORS, SHOW_FLAVORS_PARAMS, &names),
        vec![
            json!({"flavors.id": "f2", "flavors.name": "large", "projects.name": "project-one", "flavors.vcpus": 4,
                   "flavors.ram": 8192, "flavors.root_disk": 80, "flavors.ephemeral_disk": 10}),
            json!({"flavors.id": "f1", "flavors.name": "small", "projects.name": "project-one", "flavors.vcpus": 1,
                   "flavors.ram": 2048, "flavors.root_disk": 20, "flavors.ephemeral_disk": 0}),
            json!({"flavors.id": "f3", "flavors.name": "tiny", "projects.name": "project-two", "flavors.vcpus": 1,
                   "flavors.ram": 512, "flavors.root_disk": 5, "flavors.ephemeral_disk": 0}),
        ]
    );
}

#[test]
fn show_images_reads_qualified_columns() {
    // ImagesRepositoryImpl.findImages: `images.id` and `projects.id` are different columns.
    let names = [
        "images.id",
        "images.real_id",
        "images.name",
        "images.cloud_type",
        "images.state",
        "images.last_updated",
        "projects.id",
        "projects.name",
    ];
    let t = "2026-01-01T00:00:00Z";
    assert_eq!(
        read(SHOW_IMAGES, SHOW_IMAGES_PARAMS, &names),
        vec![
            json!({"images.id": "i2", "images.real_id": "r-i2", "images.name": "debian", "images.cloud_type": "mock",
                   "images.state": "saved", "images.last_updated": t, "projects.id": "p2",
                   "projects.name": "project-two"}),
            json!({"images.id": "i1", "images.real_id": "r-i1", "images.name": "ubuntu", "images.cloud_type": "mock",
                   "images.state": "saved", "images.last_updated": t, "projects.id": "p1",
                   "projects.name": "project-one"}),
        ]
    );
}

#[test]
fn show_networks_reads_qualified_columns() {
    // ProjectsRepositoryImpl.findNetworks: `networks.name` and `projects.name` both present.
    let names = [
        "networks.id",
        "networks.name",
        "projects.name",
        "networks.state",
        "networks.is_shared",
        "network_subnets.cidr",
    ];
    assert_eq!(
        read(SHOW_NETWORKS, SHOW_NETWORKS_PARAMS, &names),
        vec![
            json!({"networks.id": "n1", "networks.name": "net1", "projects.name": "project-one",
                   "networks.state": "ACTIVE", "networks.is_shared": false, "network_subnets.cidr": "10.0.0.0/24"}),
        ]
    );
}
