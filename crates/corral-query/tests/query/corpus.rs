//! The corpus: (sql, parameters, expected) over the fixture tenant. Expectations are written in a
//! shorthand that is expanded to the whole QueryResult JSON before comparing:
//! `{"c": [columns], "r": [[values]...]}` for a success (`"m"` for a message), `{"e": status,
//! "m": message}` for an error, and an array of those for several statements.

use serde_json::{Value as J, json};

use crate::{fixture, shell};

pub const CASES: &[(&str, &str, &str)] = &[
    // --- expressions without FROM
    ("select 1 + 1", "[]", r#"{"c": ["1 + 1"], "r": [[2]]}"#),
    (
        "select 7 / 2, 7 % 3, 2 * 3 - 1, -5 + 2",
        "[]",
        r#"{"c": ["7 / 2", "7 % 3", "2 * 3 - 1", "-5 + 2"], "r": [[3.5, 1, 5, -3]]}"#,
    ),
    (
        "select 1 / 0, 5 % 0, 1.5 * 2",
        "[]",
        r#"{"c": ["1 / 0", "5 % 0", "1.5 * 2"], "r": [[null, null, 3.0]]}"#,
    ),
    (
        "select 9223372036854775807 + 1",
        "[]",
        r#"{"e": "evaluation_error", "m": "Integer overflow"}"#,
    ),
    (
        "select 6 & 3, 6 | 3, 6 ^ 3, 1 << 4, 256 >> 4, ~0",
        "[]",
        r#"{"c": ["6 & 3", "6 | 3", "6 ^ 3", "1 << 4", "256 >> 4", "~0"], "r": [[2, 7, 5, 16, 16, -1]]}"#,
    ),
    (
        "select 'abc' = 'abc', 'abc' = 'ABC', '10' = 10, 'abc' > 5, true = 'TRUE', true = 1, null = null",
        "[]",
        r#"{"c": ["'abc' = 'abc'", "'abc' = 'ABC'", "'10' = 10", "'abc' > 5", "true = 'TRUE'", "true = 1", "null = null"],
            "r": [[true, false, true, true, true, true, null]]}"#,
    ),
    (
        "select 1 is null, null is null, 1 IS NOT NULL, null is not null",
        "[]",
        r#"{"c": ["1 is null", "null is null", "1 is not null", "null is not null"], "r": [[false, true, true, false]]}"#,
    ),
    (
        "select 2 between 1 and 3, 5 not between 1 and 3, 'b' between 'a' and 'c'",
        "[]",
        r#"{"c": ["2 between 1 and 3", "5 not between 1 and 3", "'b' between 'a' and 'c'"], "r": [[true, true, true]]}"#,
    ),
    (
        "select 2 in (1, 2), 4 not in (1, 2), 3 in (1, null), null in (1)",
        "[]",
        r#"{"c": ["2 in (1, 2)", "4 not in (1, 2)", "3 in (1, null)", "null in (1)"], "r": [[true, true, null, null]]}"#,
    ),
    (
        "select true xor false, true xor true, not true, !false, true and null, false and null, true or null",
        "[]",
        r#"{"c": ["true xor false", "true xor true", "not true", "!false", "true and null", "false and null", "true or null"],
            "r": [[true, false, false, true, null, false, true]]}"#,
    ),
    (
        r"select 'a%b' like 'a\%b', 'axb' like 'a\%b', 'a_b' like 'a\_b', 'abc' not like 'a_'",
        "[]",
        r#"{"c": ["'a%b' like 'a\\%b'", "'axb' like 'a\\%b'", "'a_b' like 'a\\_b'", "'abc' not like 'a_'"],
            "r": [[true, false, true, true]]}"#,
    ),
    ("select 1 where 1 = 0", "[]", r#"{"c": ["1"], "r": []}"#),
    (
        "select 'abc' + 1",
        "[]",
        r#"{"e": "evaluation_error", "m": "Cannot convert 'abc' to a number"}"#,
    ),
    // --- functions
    (
        "select abs(-3), sign(-2.5), ceil(1.2), floor(-1.2), sqrt(16), power(2, 10), mod(10, 3), round(2.5, 0), round(-2.346, 2), truncate(2.789, 1)",
        "[]",
        r#"{"c": ["abs(-3)", "sign(-2.5)", "ceil(1.2)", "floor(-1.2)", "sqrt(16)", "power(2, 10)", "mod(10, 3)",
                  "round(2.5, 0)", "round(-2.346, 2)", "truncate(2.789, 1)"],
            "r": [[3, -1, 2, -2, 4.0, 1024.0, 1, 3.0, -2.35, 2.7]]}"#,
    ),
    (
        "select ln(1), log10(100), log(2, 8), exp(0), cbrt(27), degrees(pi()), radians(180) = pi(), e() > 2.7, sqrt(-1), ln(0)",
        "[]",
        r#"{"c": ["ln(1)", "log10(100)", "log(2, 8)", "exp(0)", "cbrt(27)", "degrees(pi())", "radians(180) = pi()",
                  "e() > 2.7", "sqrt(-1)", "ln(0)"],
            "r": [[0.0, 2.0, 3.0, 1.0, 3.0, 180.0, true, true, null, null]]}"#,
    ),
    (
        "select sin(0), cos(0), tan(0), cot(0), asin(1) * 2 = pi(), acos(1), atan(0)",
        "[]",
        r#"{"c": ["sin(0)", "cos(0)", "tan(0)", "cot(0)", "asin(1) * 2 = pi()", "acos(1)", "atan(0)"],
            "r": [[0.0, 1.0, 0.0, null, true, 0.0, 0.0]]}"#,
    ),
    (
        "select rand(42) = rand(42), rand() >= 0 and rand() < 1, rand(7) < 1",
        "[]",
        r#"{"c": ["rand(42) = rand(42)", "rand() >= 0 and rand() < 1", "rand(7) < 1"], "r": [[true, true, true]]}"#,
    ),
    (
        "select conv('ff', 16, 10), conv(10, 10, 2), crc32('MySQL'), base64('abc'), bit_length('ab'), char_length('héllo'), char(72, 105)",
        "[]",
        r#"{"c": ["conv('ff', 16, 10)", "conv(10, 10, 2)", "crc32('MySQL')", "base64('abc')", "bit_length('ab')",
                  "char_length('héllo')", "char(72, 105)"],
            "r": [["255", "1010", 3259397556, "YWJj", 16, 5, "Hi"]]}"#,
    ),
    (
        "select concat('a', null, 'b', 1), join('-', 'a', null, 'b'), format('%s has %d cpus, %.1f GB', 'h1', 4, 7.5), lower('AbC'), upper('abc'), trim('  x  '), reverse('abc'), replace('a-b-c', '-', '+')",
        "[]",
        r#"{"c": ["concat('a', null, 'b', 1)", "join('-', 'a', null, 'b')", "format('%s has %d cpus, %.1f GB', 'h1', 4, 7.5)",
                  "lower('AbC')", "upper('abc')", "trim('  x  ')", "reverse('abc')", "replace('a-b-c', '-', '+')"],
            "r": [["ab1", "a-b", "h1 has 4 cpus, 7.5 GB", "abc", "ABC", "x", "cba", "a+b+c"]]}"#,
    ),
    (
        "select substr('abcdef', 1, 3), substr('abcdef', 2), substr('abc', 5), typeof(1, 'integer'), typeof(1.5, 'FLOAT'), typeof(null, 'null'), typeof('x', 'BOOLEAN'), version()",
        "[]",
        r#"{"c": ["substr('abcdef', 1, 3)", "substr('abcdef', 2)", "substr('abc', 5)", "typeof(1, 'integer')",
                  "typeof(1.5, 'FLOAT')", "typeof(null, 'null')", "typeof('x', 'BOOLEAN')", "version()"],
            "r": [["bc", "cdef", "", true, true, true, false, "0.1.0-test"]]}"#,
    ),
    (
        "select lower(null), abs(null), concat(null, null), substr(null, 1)",
        "[]",
        r#"{"c": ["lower(null)", "abs(null)", "concat(null, null)", "substr(null, 1)"], "r": [[null, null, "", null]]}"#,
    ),
    (
        "select substr('a')",
        "[]",
        r#"{"e": "evaluation_error", "m": "Function SUBSTR(S, FROM[, TO]) takes 2 to 3 arguments, got 1 argument"}"#,
    ),
    (
        "select load_extension('x')",
        "[]",
        r#"{"e": "evaluation_error", "m": "Function load_extension does not exist"}"#,
    ),
    // --- placeholders
    (
        "select id, name from projects where name regexp :name: order by name asc",
        r#"[{"name": "name", "value": "project"}]"#,
        r#"{"c": ["id", "name"], "r": [["p1", "project-one"], ["p2", "project-two"]]}"#,
    ),
    (
        "select i.name, f.ram from instances i join flavors f on i.flavor_id = f.id where i.state = ? limit 5; select tables()",
        r#"[{"index": 1, "value": "launched"}]"#,
        r#"[{"c": ["i.name", "f.ram"], "r": [["web-1", 2048], ["web-2", 8192]]},
            {"c": ["table_name"], "r": [["availability_zones"], ["clouds"], ["cluster_hosts"], ["clusters"], ["flavors"],
              ["hosts"], ["image_metadata"], ["images"], ["instance_metadata"], ["instance_networks"], ["instances"],
              ["keypairs"], ["network_subnets"], ["networks"], ["operations"], ["project_images"], ["project_metadata"],
              ["project_quota"], ["projects"]]}]"#,
    ),
    (
        "select ?, typeof(?, 'INTEGER'), :x:",
        r#"[{"index": 1, "value": "42"}, {"index": 2, "value": "42"}, {"name": "x", "value": "4a"}]"#,
        r#"{"c": ["?", "typeof(?, 'INTEGER')", ":x:"], "r": [[42, true, "4a"]]}"#,
    ),
    (
        "select '?', ':a:', ?",
        r#"[{"index": 1, "value": 5}]"#,
        r#"{"c": ["'?'", "':a:'", "?"], "r": [["?", ":a:", 5]]}"#,
    ),
    (
        "select ?, ?, ?, :some.id:",
        r#"[{"index": 1, "value": true}, {"index": 2, "value": null}, {"index": 3, "value": 1.5}, {"name": "some.id", "value": "a1"}]"#,
        r#"{"c": ["?", "?", "?", ":some.id:"], "r": [[true, null, 1.5, "a1"]]}"#,
    ),
    (
        "select * from instances where id = :id:",
        "[]",
        r#"{"e": "missing_parameters", "m": "Parameter for placeholder \"id\" is missing"}"#,
    ),
    (
        "select 1; select ?",
        "[]",
        r#"[{"e": "missing_parameters", "m": "Parameter for placeholder #1 is missing"}]"#,
    ),
    (
        "select :n:; select ?",
        r#"[{"name": "n", "index": 1, "value": "x"}]"#,
        r#"[{"e": "missing_parameters", "m": "Parameter for placeholder #1 is missing"}]"#,
    ),
    (
        "select name from instances where state = ? and project_id = ?; select count(*) from instances where state = ?",
        r#"[{"index": 1, "value": "launched"}, {"index": 2, "value": "p1"}, {"index": 3, "value": "shutoff"}, {"index": 9, "value": "unused"}]"#,
        r#"[{"c": ["name"], "r": [["web-1"], ["web-2"]]}, {"c": ["count(*)"], "r": [[1]]}]"#,
    ),
    // --- the Perspective shell's own queries (perspective-shell's Find*Request), as it writes them:
    // every column qualified and named as written, so the shell finds each one by name.
    (
        shell::SHOW_INSTANCES,
        shell::SHOW_INSTANCES_PARAMS,
        r#"{"c": ["instances.id", "instances.real_id", "instances.name", "projects.id", "projects.name",
                  "instances.cloud_id", "instances.cloud_type", "images.name", "flavors.name", "instances.addresses",
                  "instances.state", "instances.last_updated"],
            "r": [["a4", "r-a4", "orphan", "p3", "other", "c2", "openstack", "snap", null, "", "error", "2026-01-01T00:00:00Z"],
                  ["a1", "r-a1", "web-1", "p1", "project-one", "c1", "mock", "ubuntu", "small", "10.0.0.1", "launched",
                   "2026-01-01T00:00:00Z"],
                  ["a2", "r-a2", "web-2", "p1", "project-one", "c1", "mock", "ubuntu", "large", "10.0.0.2,10.0.1.2",
                   "launched", "2026-01-01T00:00:00Z"]]}"#,
    ),
    (
        "select instances.id, instances.name, projects.name, images.name, flavors.name from instances inner join projects on instances.project_id = projects.id left join flavors on instances.flavor_id = flavors.id and instances.project_id = flavors.project_id left join images on instances.image_id = images.id where projects.name like :projects.name: and images.name regexp :images.name: order by instances.name asc",
        r#"[{"name": "projects.name", "value": "project-%"}, {"name": "images.name", "value": "^deb"}]"#,
        r#"{"c": ["instances.id", "instances.name", "projects.name", "images.name", "flavors.name"],
            "r": [["a3", "db-1", "project-two", "debian", "tiny"]]}"#,
    ),
    (
        shell::SHOW_FLAVORS,
        shell::SHOW_FLAVORS_PARAMS,
        r#"{"c": ["flavors.id", "flavors.name", "projects.name", "flavors.vcpus", "flavors.ram", "flavors.root_disk",
                  "flavors.ephemeral_disk"],
            "r": [["f2", "large", "project-one", 4, 8192, 80, 10], ["f1", "small", "project-one", 1, 2048, 20, 0],
                  ["f3", "tiny", "project-two", 1, 512, 5, 0]]}"#,
    ),
    (
        shell::SHOW_IMAGES,
        shell::SHOW_IMAGES_PARAMS,
        r#"{"c": ["images.id", "images.real_id", "images.name", "images.cloud_type", "images.state", "images.last_updated",
                  "projects.id", "projects.name"],
            "r": [["i2", "r-i2", "debian", "mock", "saved", "2026-01-01T00:00:00Z", "p2", "project-two"],
                  ["i1", "r-i1", "ubuntu", "mock", "saved", "2026-01-01T00:00:00Z", "p1", "project-one"]]}"#,
    ),
    (
        shell::SHOW_NETWORKS,
        shell::SHOW_NETWORKS_PARAMS,
        r#"{"c": ["networks.id", "networks.name", "projects.name", "networks.state", "networks.is_shared",
                  "network_subnets.cidr"],
            "r": [["n1", "net1", "project-one", "ACTIVE", false, "10.0.0.0/24"]]}"#,
    ),
    (
        "explain select flavors.id, flavors.name, projects.name from flavors inner join projects on flavors.project_id = projects.id where projects.cloud_type = :projects.cloud_type: order by flavors.name asc",
        r#"[{"name": "projects.cloud_type", "value": "mock"}]"#,
        r#"{"c": ["task"], "r": [["scan table projects (3 rows) filter (projects.cloud_type = 'mock')"],
            ["scan table flavors (3 rows)"], ["hash inner join on (flavors.project_id = projects.id)"],
            ["project flavors.id, flavors.name, projects.name"], ["sort by flavors.name"]]}"#,
    ),
    // --- output column names: a qualified column as written (lower-cased like every name), an
    // alias as given, a bare column bare; `*` bare over one table and qualified over a join (a
    // USING/NATURAL column bare); `t.*` qualified; expressions by their text.
    (
        "select instances.id, instances.name, projects.name from instances join projects on instances.project_id = projects.id where projects.cloud_id = 'c1' order by instances.name",
        "[]",
        r#"{"c": ["instances.id", "instances.name", "projects.name"],
            "r": [["a3", "db-1", "project-two"], ["a1", "web-1", "project-one"], ["a2", "web-2", "project-one"]]}"#,
    ),
    (
        "select I.Name, P.NAME, `i`.`state`, `Flavor`.ram from Instances I join Projects P on I.project_id = P.id join flavors `Flavor` on `Flavor`.id = I.flavor_id where I.id = 'a1'",
        "[]",
        r#"{"c": ["i.name", "p.name", "i.state", "flavor.ram"], "r": [["web-1", "project-one", "launched", 2048]]}"#,
    ),
    (
        "select i.name as instance, p.name project, state, `Flavor`.name as `Flavor Name` from instances i join projects p on i.project_id = p.id join flavors `Flavor` on `Flavor`.id = i.flavor_id where i.id = 'a2'",
        "[]",
        r#"{"c": ["instance", "project", "state", "Flavor Name"], "r": [["web-2", "project-one", "launched", "large"]]}"#,
    ),
    (
        "select ram, vcpus, p.name from flavors f join projects p on f.project_id = p.id where f.id = 'f3'",
        "[]",
        r#"{"c": ["ram", "vcpus", "p.name"], "r": [[512, 1, "project-two"]]}"#,
    ),
    (
        "select * from clouds c order by c.id",
        "[]",
        r#"{"c": ["id", "type"], "r": [["c1", "mock"], ["c2", "openstack"]]}"#,
    ),
    (
        "select * from clouds join projects on projects.cloud_id = clouds.id where projects.id = 'p3'",
        "[]",
        r#"{"c": ["clouds.id", "clouds.type", "projects.id", "projects.name", "projects.cloud_id", "projects.cloud_type",
                  "projects.last_updated"],
            "r": [["c2", "openstack", "p3", "other", "c2", "openstack", "2026-01-01T00:00:00Z"]]}"#,
    ),
    (
        "select * from cluster_hosts ch join hosts h using (address) join clusters c on c.name = ch.cluster where ch.position = 1",
        "[]",
        r#"{"c": ["ch.cluster", "address", "ch.position", "h.status", "h.os", "h.cpus", "h.memory", "h.space", "h.last_check",
                  "h.source", "h.cluster", "c.name", "c.status", "c.network", "c.container_manager", "c.hosts_total",
                  "c.hosts_available", "c.hosts_unavailable"],
            "r": [["k1", "10.1.0.1", 1, "active", "centos", 4, 8388608, 104857600, "2026-01-01T00:00:00Z", "ssh", "k1",
                   "k1", "ok", "flannel", "kubernetes", 2, 2, 0]]}"#,
    ),
    (
        "select C.*, 'x' as tag from clouds c where c.id = 'c1'; select clouds.* from clouds where id = 'c2'",
        "[]",
        r#"[{"c": ["c.id", "c.type", "tag"], "r": [["c1", "mock", "x"]]},
            {"c": ["clouds.id", "clouds.type"], "r": [["c2", "openstack"]]}]"#,
    ),
    (
        "select pi.*, pm.* from project_images pi join project_metadata pm using (project_id)",
        "[]",
        r#"{"c": ["pi.project_id", "pi.image_id", "pm.project_id", "pm.key", "pm.value"], "r": [["p1", "i1", "p1", "region", "r1"]]}"#,
    ),
    (
        "select p.name, count(i.id), sum(f.ram) as ram, upper(P.Name) from projects p left join instances i on i.project_id = p.id left join flavors f on f.id = i.flavor_id group by p.name order by p.name",
        "[]",
        r#"{"c": ["p.name", "count(i.id)", "ram", "upper(p.name)"],
            "r": [["other", 1, null, "OTHER"], ["project-one", 2, 10240, "PROJECT-ONE"], ["project-two", 1, 512, "PROJECT-TWO"]]}"#,
    ),
    (
        "select *, count(*) from clouds c join projects p on p.cloud_id = c.id group by c.id",
        "[]",
        r#"{"e": "evaluation_error", "m": "Column c.type must appear in GROUP BY or be used in an aggregate function"}"#,
    ),
    (
        "explain select * from clouds c join projects p on p.cloud_id = c.id",
        "[]",
        r#"{"c": ["task"], "r": [["scan table projects as p (3 rows)"], ["scan table clouds as c (2 rows)"],
            ["hash inner join on (p.cloud_id = c.id)"],
            ["project c.id, c.type, p.id, p.name, p.cloud_id, p.cloud_type, p.last_updated"]]}"#,
    ),
    // --- Corral's versions of the shell's queries, with table aliases
    (
        "select i.id, i.name, p.name, im.name, f.name, i.state from instances i join projects p on i.project_id = p.id join images im on i.image_id = im.id join flavors f on i.flavor_id = f.id order by i.name",
        "[]",
        r#"{"c": ["i.id", "i.name", "p.name", "im.name", "f.name", "i.state"],
            "r": [["a3", "db-1", "project-two", "debian", "tiny", "shutoff"],
                  ["a1", "web-1", "project-one", "ubuntu", "small", "launched"],
                  ["a2", "web-2", "project-one", "ubuntu", "large", "launched"]]}"#,
    ),
    (
        "select p.name, f.name, f.vcpus, f.ram, f.root_disk, f.is_public from flavors f join projects p on f.project_id = p.id order by f.ram desc",
        "[]",
        r#"{"c": ["p.name", "f.name", "f.vcpus", "f.ram", "f.root_disk", "f.is_public"],
            "r": [["project-one", "large", 4, 8192, 80, true], ["project-one", "small", 1, 2048, 20, true],
                  ["project-two", "tiny", 1, 512, 5, false]]}"#,
    ),
    (
        "select n.name, n.state, n.is_shared, s.cidr from networks n left join network_subnets s on s.network_id = n.id order by n.name",
        "[]",
        r#"{"c": ["n.name", "n.state", "n.is_shared", "s.cidr"],
            "r": [["net1", "ACTIVE", false, "10.0.0.0/24"], ["net2", "ACTIVE", true, null]]}"#,
    ),
    (
        "select k.name, k.fingerprint, p.name from keypairs k, projects p where k.project_id = p.id",
        "[]",
        r#"{"c": ["k.name", "k.fingerprint", "p.name"],
            "r": [["key1", "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99", "project-one"]]}"#,
    ),
    (
        "select p.name, q.instances, q.vcpus, q.ram, q.keypairs from projects p left outer join project_quota q on q.project_id = p.id order by p.name",
        "[]",
        r#"{"c": ["p.name", "q.instances", "q.vcpus", "q.ram", "q.keypairs"],
            "r": [["other", null, null, null, null], ["project-one", 10, 20, 40960, 5], ["project-two", null, null, null, null]]}"#,
    ),
    // --- join forms
    (
        "select i.name, f.name from flavors f right join instances i on i.flavor_id = f.id order by i.name",
        "[]",
        r#"{"c": ["i.name", "f.name"], "r": [["db-1", "tiny"], ["orphan", null], ["web-1", "small"], ["web-2", "large"]]}"#,
    ),
    (
        "select count(*) from clouds cross join projects",
        "[]",
        r#"{"c": ["count(*)"], "r": [[6]]}"#,
    ),
    (
        "select count(*) from clouds join projects",
        "[]",
        r#"{"c": ["count(*)"], "r": [[6]]}"#,
    ),
    (
        "select c.id, p.id from clouds c, projects p where c.id = p.cloud_id order by p.id",
        "[]",
        r#"{"c": ["c.id", "p.id"], "r": [["c1", "p1"], ["c1", "p2"], ["c2", "p3"]]}"#,
    ),
    (
        "select * from project_images join project_metadata using (project_id)",
        "[]",
        r#"{"c": ["project_id", "project_images.image_id", "project_metadata.key", "project_metadata.value"], "r": [["p1", "i1", "region", "r1"]]}"#,
    ),
    (
        "select * from project_images natural join project_quota",
        "[]",
        r#"{"c": ["project_id", "project_images.image_id", "project_quota.instances", "project_quota.vcpus", "project_quota.ram",
                  "project_quota.disk", "project_quota.ips", "project_quota.security_groups", "project_quota.volumes",
                  "project_quota.keypairs"],
            "r": [["p1", "i1", 10, 20, 40960, 100, null, null, null, 5], ["p2", "i2", null, null, null, null, null, null, null, null]]}"#,
    ),
    (
        "select name, project_id, key, value from availability_zones natural left join project_metadata",
        "[]",
        r#"{"c": ["name", "project_id", "key", "value"], "r": [["nova", "p1", "region", "r1"], ["nova", "p2", null, null]]}"#,
    ),
    (
        "select project_id, key from project_metadata natural right outer join availability_zones",
        "[]",
        r#"{"c": ["project_id", "key"], "r": [["p1", "region"], ["p2", null]]}"#,
    ),
    (
        "select project_id, name from project_quota left join availability_zones using (project_id) order by project_id",
        "[]",
        r#"{"c": ["project_id", "name"], "r": [["p1", "nova"], ["p2", "nova"]]}"#,
    ),
    (
        "select count(*) from (clouds c, projects p) where c.id = p.cloud_id",
        "[]",
        r#"{"c": ["count(*)"], "r": [[3]]}"#,
    ),
    (
        "select c.*, p.name from clouds c inner join projects p on p.cloud_id = c.id where p.id = 'p3'",
        "[]",
        r#"{"c": ["c.id", "c.type", "p.name"], "r": [["c2", "openstack", "other"]]}"#,
    ),
    (
        "select * from clouds c join clouds d on c.id = d.id where c.id = 'c1'",
        "[]",
        r#"{"c": ["c.id", "c.type", "d.id", "d.type"], "r": [["c1", "mock", "c1", "mock"]]}"#,
    ),
    (
        "select c.name, h.address, ch.position from clusters c join cluster_hosts ch on ch.cluster = c.name join hosts h on h.address = ch.address order by ch.position desc",
        "[]",
        r#"{"c": ["c.name", "h.address", "ch.position"], "r": [["k1", "10.1.0.2", 2], ["k1", "10.1.0.1", 1]]}"#,
    ),
    (
        "select i.name, m.value from instances i left join instance_metadata m on m.instance_id = i.id and m.key = 'role' order by i.name",
        "[]",
        r#"{"c": ["i.name", "m.value"], "r": [["db-1", "db"], ["orphan", null], ["web-1", "web"], ["web-2", null]]}"#,
    ),
    (
        "select i.name from instances i left join instance_metadata m on m.instance_id = i.id where m.value is null order by i.name",
        "[]",
        r#"{"c": ["i.name"], "r": [["orphan"], ["web-2"]]}"#,
    ),
    (
        "select i.name, p.name, f.name from instances i join projects p on i.project_id = p.id join flavors f on f.id = i.flavor_id where i.name = 'web-2'",
        "[]",
        r#"{"c": ["i.name", "p.name", "f.name"], "r": [["web-2", "project-one", "large"]]}"#,
    ),
    (
        "select id from clouds, projects",
        "[]",
        r#"{"e": "evaluation_error", "m": "Column id is ambiguous"}"#,
    ),
    // --- filters
    (
        "select name from instances where name like 'web%' order by name",
        "[]",
        r#"{"c": ["name"], "r": [["web-1"], ["web-2"]]}"#,
    ),
    (
        "select name from instances where name like '_b-_'",
        "[]",
        r#"{"c": ["name"], "r": [["db-1"]]}"#,
    ),
    (
        "select name from instances where name regexp '^w.*[12]$' order by name desc",
        "[]",
        r#"{"c": ["name"], "r": [["web-2"], ["web-1"]]}"#,
    ),
    (
        "select name from instances where name not regexp 'e'",
        "[]",
        r#"{"c": ["name"], "r": [["db-1"], ["orphan"]]}"#,
    ),
    (
        "select name from instances where state in ('shutoff', 'error') order by name",
        "[]",
        r#"{"c": ["name"], "r": [["db-1"], ["orphan"]]}"#,
    ),
    (
        "select name from flavors where is_public = 'true' and has_swap = 0",
        "[]",
        r#"{"c": ["name"], "r": [["small"]]}"#,
    ),
    (
        "select name from flavors where ram > '1000' order by ram",
        "[]",
        r#"{"c": ["name"], "r": [["small"], ["large"]]}"#,
    ),
    (
        "select name from flavors where not is_public xor has_swap",
        "[]",
        r#"{"c": ["name"], "r": [["large"], ["tiny"]]}"#,
    ),
    (
        "SELECT NAME, Cloud_ID FROM PROJECTS P WHERE P.ID = 'p1'",
        "[]",
        r#"{"c": ["name", "cloud_id"], "r": [["project-one", "c1"]]}"#,
    ),
    (
        "select type, version, finished_at is null from operations order by type",
        "[]",
        r#"{"c": ["type", "version", "finished_at is null"], "r": [["deploy", "1.0", false], ["restart", null, true]]}"#,
    ),
    // --- grouping, ordering, limits
    (
        "select state, count(*) from instances group by state order by state",
        "[]",
        r#"{"c": ["state", "count(*)"], "r": [["error", 1], ["launched", 2], ["shutoff", 1]]}"#,
    ),
    (
        "select status, count(*) from hosts group by status having count(*) > 1",
        "[]",
        r#"{"c": ["status", "count(*)"], "r": [["active", 3]]}"#,
    ),
    (
        "select name, count(*) from instances group by state",
        "[]",
        r#"{"e": "evaluation_error", "m": "Column name must appear in GROUP BY or be used in an aggregate function"}"#,
    ),
    (
        "select count(*), count(cluster), sum(cpus), avg(cpus), min(address), max(address) from hosts",
        "[]",
        r#"{"c": ["count(*)", "count(cluster)", "sum(cpus)", "avg(cpus)", "min(address)", "max(address)"],
            "r": [[4, 2, 16, 4.0, "10.1.0.1", "10.1.0.4"]]}"#,
    ),
    (
        "select count(*), sum(ram), avg(ram), min(ram) from flavors where ram > 100000",
        "[]",
        r#"{"c": ["count(*)", "sum(ram)", "avg(ram)", "min(ram)"], "r": [[0, null, null, null]]}"#,
    ),
    (
        "select state, count(*) from instances where 1 = 0 group by state",
        "[]",
        r#"{"c": ["state", "count(*)"], "r": []}"#,
    ),
    (
        "select project_id, count(*) as n from instances group by project_id order by n desc, project_id",
        "[]",
        r#"{"c": ["project_id", "n"], "r": [["p1", 2], ["p2", 1], ["p3", 1]]}"#,
    ),
    (
        "select project_id p, sum(ram) total from flavors group by p having total > 1000 order by 2",
        "[]",
        r#"{"c": ["p", "total"], "r": [["p1", 10240]]}"#,
    ),
    (
        "select substr(name, 0, 3) as prefix, count(*) from instances group by prefix order by prefix",
        "[]",
        r#"{"c": ["prefix", "count(*)"], "r": [["db-", 1], ["orp", 1], ["web", 2]]}"#,
    ),
    (
        "select upper(state), count(*) from instances group by upper(state) order by 1",
        "[]",
        r#"{"c": ["upper(state)", "count(*)"], "r": [["ERROR", 1], ["LAUNCHED", 2], ["SHUTOFF", 1]]}"#,
    ),
    (
        "select COUNT(*), Upper('MiXed') AS Shout from clouds",
        "[]",
        r#"{"c": ["count(*)", "shout"], "r": [[2, "MIXED"]]}"#,
    ),
    (
        "select name, ram from flavors order by 2 desc limit 2",
        "[]",
        r#"{"c": ["name", "ram"], "r": [["large", 8192], ["small", 2048]]}"#,
    ),
    (
        "select name from instances order by name limit 1, 2; select name from instances order by name limit 2 offset 2; select name from instances limit 0",
        "[]",
        r#"[{"c": ["name"], "r": [["orphan"], ["web-1"]]}, {"c": ["name"], "r": [["web-1"], ["web-2"]]}, {"c": ["name"], "r": []}]"#,
    ),
    (
        "select cluster from hosts order by cluster; select cluster from hosts order by cluster desc",
        "[]",
        r#"[{"c": ["cluster"], "r": [[null], [null], ["k1"], ["k1"]]}, {"c": ["cluster"], "r": [["k1"], ["k1"], [null], [null]]}]"#,
    ),
    (
        "select address from hosts order by status; select address from hosts order by status desc",
        "[]",
        r#"[{"c": ["address"], "r": [["10.1.0.1"], ["10.1.0.2"], ["10.1.0.3"], ["10.1.0.4"]]},
            {"c": ["address"], "r": [["10.1.0.4"], ["10.1.0.1"], ["10.1.0.2"], ["10.1.0.3"]]}]"#,
    ),
    (
        "select name from flavors order by vcpus * 1000 + ram desc",
        "[]",
        r#"{"c": ["name"], "r": [["large"], ["small"], ["tiny"]]}"#,
    ),
    (
        "select state from instances group by state order by count(*) desc, state",
        "[]",
        r#"{"c": ["state"], "r": [["launched"], ["error"], ["shutoff"]]}"#,
    ),
    (
        "select i.state, count(*) + 1 from instances i group by state order by i.state limit 2",
        "[]",
        r#"{"c": ["i.state", "count(*) + 1"], "r": [["error", 2], ["launched", 3]]}"#,
    ),
    (
        "select max(ram) - min(ram), sum(1), avg(null), count(fqdn) from flavors, instances where flavors.id = instances.flavor_id",
        "[]",
        r#"{"c": ["max(ram) - min(ram)", "sum(1)", "avg(null)", "count(fqdn)"], "r": [[7680, 3, null, 3]]}"#,
    ),
    (
        "select a.name, b.name from flavors a join flavors b on a.vcpus = b.vcpus and a.name < b.name",
        "[]",
        r#"{"c": ["a.name", "b.name"], "r": [["small", "tiny"]]}"#,
    ),
    (
        "select f.name, p.name from flavors f left join projects p on f.project_id = p.id and p.name = 'project-two' order by f.name",
        "[]",
        r#"{"c": ["f.name", "p.name"], "r": [["large", null], ["small", null], ["tiny", "project-two"]]}"#,
    ),
    (
        "select i.name, n.name from instances i join instance_networks x on x.instance_id = i.id right join networks n on n.id = x.network_id order by n.name, i.name",
        "[]",
        r#"{"c": ["i.name", "n.name"], "r": [["web-1", "net1"], ["web-2", "net1"], [null, "net2"]]}"#,
    ),
    // --- EXPLAIN and introspection
    (
        "explain select i.name from instances i join flavors f on i.flavor_id = f.id where i.state = 'launched' order by i.name limit 1",
        "[]",
        r#"{"c": ["task"], "r": [["scan table flavors as f (3 rows)"],
            ["scan table instances as i (4 rows) filter (i.state = 'launched')"],
            ["hash inner join on (i.flavor_id = f.id)"], ["project i.name"], ["sort by i.name"], ["limit 1 offset 0"]]}"#,
    ),
    (
        "explain select state, count(*) from instances group by state having count(*) > 1",
        "[]",
        r#"{"c": ["task"], "r": [["scan table instances (4 rows)"], ["hash aggregate by 1 keys (1 aggregates)"],
            ["filter groups (having)"], ["project state, count(*)"]]}"#,
    ),
    (
        "select columns('instances')",
        "[]",
        r#"{"c": ["column_name", "type", "default_value", "indexed"],
            "r": [["id", "string", "null", "false"], ["real_id", "string", "null", "false"], ["name", "string", "null", "false"],
                  ["cloud_id", "string", "null", "false"], ["cloud_type", "string", "null", "false"],
                  ["project_id", "string", "null", "false"], ["flavor_id", "string", "null", "false"],
                  ["image_id", "string", "null", "false"], ["state", "string", "null", "false"],
                  ["last_updated", "string", "null", "false"], ["created", "string", "null", "false"],
                  ["availability_zone", "string", "null", "false"], ["addresses", "string", "null", "false"],
                  ["fqdn", "string", "null", "false"]]}"#,
    ),
    (
        "select functions('SUBSTR')",
        "[]",
        r#"{"c": ["function_name", "description"],
            "r": [["SUBSTR(S, FROM[, TO])", "Characters FROM (0-based) up to TO - 1, or to the end, of S"]]}"#,
    ),
    (
        "select functions('nope')",
        "[]",
        r#"{"e": "evaluation_error", "m": "Function nope does not exist"}"#,
    ),
    (
        "select columns('foo')",
        "[]",
        r#"{"e": "evaluation_error", "m": "Table foo does not exist"}"#,
    ),
    (
        "select tables(), 1",
        "[]",
        r#"{"e": "evaluation_error", "m": "TABLES() must be the only item of a SELECT without FROM"}"#,
    ),
    // --- errors
    (
        "select * from foo",
        "[]",
        r#"{"e": "evaluation_error", "m": "Table foo does not exist"}"#,
    ),
    (
        "select nope from instances",
        "[]",
        r#"{"e": "evaluation_error", "m": "Column nope does not exist"}"#,
    ),
    (
        "selec 1",
        "[]",
        r#"{"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"selec\" at 1:0"}"#,
    ),
    (
        "select 1 union select 2",
        "[]",
        r#"{"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"union\" at 1:9"}"#,
    ),
    (
        "select distinct name from instances",
        "[]",
        r#"{"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"distinct\" at 1:7"}"#,
    ),
    (
        "select count(distinct state) from instances",
        "[]",
        r#"{"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"distinct\" at 1:13"}"#,
    ),
    (
        "select (select 1)",
        "[]",
        r#"{"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"select\" at 1:8"}"#,
    ),
    (
        "select 1; selec 2; select 3",
        "[]",
        r#"[{"c": ["1"], "r": [[1]]},
            {"e": "syntax_error", "m": "Parse error: \"unexpected token\" near \"selec\" at 1:10"},
            {"c": ["3"], "r": [[3]]}]"#,
    ),
    (
        "insert into clouds values ('x', 'y')",
        "[]",
        r#"{"e": "syntax_error", "m": "Only SELECT and EXPLAIN statements are supported."}"#,
    ),
];

/// Expands the shorthand to the whole QueryResult JSON.
fn expand(short: &J) -> J {
    if let Some(status) = short.get("e") {
        return json!({"status": status, "count": 0, "data": {"columnName": [], "row": []}, "message": short["m"]});
    }
    let rows: Vec<J> = short["r"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"value": r}))
        .collect();
    json!({
        "status": "success",
        "count": rows.len(),
        "data": {"columnName": short["c"], "row": rows},
        "message": short.get("m").cloned().unwrap_or(json!("")),
    })
}

pub fn expected(text: &str) -> J {
    let short: J = serde_json::from_str(text).unwrap_or_else(|e| panic!("bad expectation {text}: {e}"));
    match short {
        J::Array(items) => J::Array(items.iter().map(expand).collect()),
        one => J::Array(vec![expand(&one)]),
    }
}

#[test]
fn corpus() {
    let db = fixture::db();
    let mut failures = Vec::new();
    for (sql, params, want) in CASES {
        let got = serde_json::to_value(fixture::run(
            &db,
            sql,
            &fixture::params(params),
            &fixture::limits(),
        ))
        .unwrap();
        let want = expected(want);
        if got != want {
            failures.push(format!("{sql}\n  want {want}\n  got  {got}"));
        }
    }
    assert!(CASES.len() >= 60);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// `*` over any join of any tables (with or without aliases, a self-join, `NATURAL`, three
/// tables) names every column once; over one table it gives the schema's bare names.
#[test]
fn star_names_never_collide() {
    let db = fixture::db();
    let unique = |sql: &str| -> Vec<String> {
        let r = fixture::run(&db, sql, &[], &fixture::limits()).remove(0);
        assert_eq!(
            serde_json::to_value(r.status).unwrap(),
            "success",
            "{sql}: {}",
            r.message
        );
        let names = r.data.column_name;
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            assert!(seen.insert(n.clone()), "{sql}: {n} twice in {names:?}");
        }
        names
    };
    for a in corral_query::TABLES {
        let bare: Vec<String> = a.columns.iter().map(|(c, _)| c.to_string()).collect();
        assert_eq!(unique(&format!("select * from {}", a.name)), bare);
        assert_eq!(unique(&format!("select * from {} t", a.name)), bare);
        for b in corral_query::TABLES {
            let both = a.columns.len() + b.columns.len();
            let names = unique(&format!("select * from {} x join {} y", a.name, b.name));
            assert_eq!(names.len(), both);
            assert!(
                names.iter().all(|n| n.starts_with("x.") || n.starts_with("y.")),
                "{names:?}"
            );
            if a.name != b.name {
                let names = unique(&format!("select * from {}, {}", a.name, b.name));
                assert_eq!(names.first(), Some(&format!("{}.{}", a.name, a.columns[0].0)));
            }
            unique(&format!("select * from {} x natural join {} y", a.name, b.name));
            unique(&format!(
                "select * from {} x natural left join {} y, {} z",
                a.name, b.name, a.name
            ));
            unique(&format!(
                "select x.*, y.* from {} x cross join {} y",
                a.name, b.name
            ));
        }
    }
}

#[test]
fn row_limit_truncates_after_limit() {
    let db = fixture::db();
    let limits = corral_query::Limits {
        row_limit: 2,
        ..fixture::limits()
    };
    let got = serde_json::to_value(fixture::run(&db, "select name from instances; select name from instances limit 2; select name from instances limit 1, 3", &[], &limits)).unwrap();
    let want = expected(
        r#"[{"c": ["name"], "r": [["web-1"], ["web-2"]], "m": "Row limit of 2 rows reached; result truncated."},
            {"c": ["name"], "r": [["web-1"], ["web-2"]]},
            {"c": ["name"], "r": [["web-2"], ["db-1"]], "m": "Row limit of 2 rows reached; result truncated."}]"#,
    );
    assert_eq!(got, want);
}
