//! The Perspective family's wire boundary (perspective.md 3.1, 5, 6): request bodies become
//! core's domain inputs here, with the contract's 400 texts, and core's per-item outcomes
//! become the `{id, status, message}` results of 5.2. Core never sees JSON or a status number.
//!
//! A parse answers a [`Parsed`] value that core inspects only after its permission check: a
//! reader is answered 403 whatever body it sends (README 5), and no handler checks permission.

use axum::http::StatusCode;
use corral_core::{BulkItem, BulkOutcome, LaunchItem, SnapshotItem};
use corral_types::perspective::{BulkResult, Metadata, MetadataEntry};
use corral_types::{Error, ImageId, InstanceId, Parsed};
use serde_json::Value;

/// Renders core's outcomes as the per-item results of 5.2 (202, 404, 409), in request order;
/// an item that created nothing has the id `""`.
pub fn bulk_results<I: AsRef<str>>(items: Vec<BulkItem<I>>) -> Vec<BulkResult> {
    items
        .into_iter()
        .map(|item| {
            let (status, message) = match item.outcome {
                BulkOutcome::Accepted(state) => (StatusCode::ACCEPTED, state),
                BulkOutcome::Already(state) => (StatusCode::ACCEPTED, format!("already {state}")),
                BulkOutcome::NotFound(why) => (StatusCode::NOT_FOUND, why),
                BulkOutcome::Conflict(why) => (StatusCode::CONFLICT, why),
            };
            BulkResult {
                id: item.id.as_ref().map_or("", AsRef::as_ref).to_string(),
                status: status.as_u16(),
                message,
            }
        })
        .collect()
}

/// A body that must be an array of strings (5.5-5.7, 6.4).
fn strings(body: Value) -> Result<Vec<String>, Error> {
    let bad = || Error::bad_request("The request body must be a JSON array of ids (strings).");
    let Value::Array(items) = body else {
        return Err(bad());
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect()
}

/// Instance ids of `POST /instances/delete` and `PUT /instances/...` (5.5-5.7).
pub fn instance_ids(body: Value) -> Parsed<Vec<InstanceId>> {
    Ok(strings(body)?.into_iter().map(InstanceId::from_trusted).collect())
}

/// Image ids of `POST /images/delete` (6.4).
pub fn image_ids(body: Value) -> Parsed<Vec<ImageId>> {
    Ok(strings(body)?.into_iter().map(ImageId::from_trusted).collect())
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 255
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

/// Metadata as given: `{"entry": [{"key", "value"}]}` or a plain object of strings (3.1).
fn metadata(v: Option<&Value>, at: &str) -> Result<Metadata, Error> {
    let bad = |why: &str| Error::bad_request(format!("{at}.metadata: {why}"));
    let mut entry = Vec::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.contains_key("entry") => {
            let Some(Value::Array(items)) = map.get("entry") else {
                return Err(bad("entry must be an array"));
            };
            for it in items {
                let (Some(k), Some(v)) = (
                    it.get("key").and_then(Value::as_str),
                    it.get("value").and_then(Value::as_str),
                ) else {
                    return Err(bad("each entry needs a string key and value"));
                };
                entry.push(MetadataEntry {
                    key: k.to_string(),
                    value: v.to_string(),
                });
            }
        }
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return Err(bad("values must be strings"));
                };
                entry.push(MetadataEntry {
                    key: k.clone(),
                    value: v.to_string(),
                });
            }
        }
        Some(_) => return Err(bad("must be an object")),
    }
    for e in &entry {
        let ok = !e.key.is_empty()
            && e.key.len() <= 255
            && e.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(bad(&format!(
                "invalid key '{}': use 1 to 255 of A-Z a-z 0-9 _ . -",
                e.key
            )));
        }
    }
    Ok(Metadata { entry })
}

/// The items of `POST /instances` (5.4's 400s; the references are core's per-item checks).
pub fn launch_items(body: Value) -> Parsed<Vec<LaunchItem>> {
    let Value::Array(items) = body else {
        return Err(Error::bad_request(
            "The request body must be a JSON array of instances.",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let at = format!("[{i}]");
            if !it.is_object() {
                return Err(Error::bad_request(format!(
                    "{at}: an instance must be an object."
                )));
            }
            let need = |path: &[&str]| {
                str_at(it, path).map(str::to_string).ok_or_else(|| {
                    Error::bad_request(format!("{at}.{}: a string is required.", path.join(".")))
                })
            };
            let name = need(&["name"])?;
            if !name_ok(&name) {
                return Err(Error::bad_request(format!("{at}.name: 1 to 255 characters.")));
            }
            let keypair = match (it.get("keypair"), it.get("keypairs")) {
                (Some(Value::Object(k)), _) if !k.is_empty() => Some(
                    k.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(format!("{at}.keypair.name: a string is required."))
                        })?
                        .to_string(),
                ),
                (_, Some(Value::Array(list))) if list.len() > 1 => {
                    return Err(Error::bad_request(format!("{at}.keypairs: at most one keypair.")));
                }
                (_, Some(Value::Array(list))) => list
                    .first()
                    .map(|k| {
                        k.get("name")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                Error::bad_request(format!("{at}.keypairs[0].name: a string is required."))
                            })
                    })
                    .transpose()?,
                _ => None,
            };
            let networks = match it.get("networks") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|n| {
                        n.get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                Error::bad_request(format!("{at}.networks: each needs a string id."))
                            })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(Error::bad_request(format!("{at}.networks: must be an array."))),
            };
            let zone = match it.get("availabilityZone") {
                Some(Value::Object(z)) if !z.is_empty() => Some(
                    z.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Error::bad_request(format!("{at}.availabilityZone.name: a string is required."))
                        })?
                        .to_string(),
                ),
                _ => None,
            };
            Ok(LaunchItem {
                project: need(&["projectId"])?,
                flavor: need(&["flavor", "id"])?,
                image: ImageId::from_trusted(need(&["image", "id"])?),
                metadata: metadata(it.get("metadata"), &at)?,
                name,
                keypair,
                networks,
                zone,
            })
        })
        .collect()
}

/// The pairs of `PUT /instances/rename` (5.8), in the object's key order as sent.
pub fn rename_items(body: Value) -> Parsed<Vec<(InstanceId, String)>> {
    let Value::Object(map) = body else {
        return Err(Error::bad_request(
            "The request body must be a JSON object of instance id to new name.",
        ));
    };
    let mut items = Vec::with_capacity(map.len());
    for (id, name) in map {
        let Value::String(name) = name else {
            return Err(Error::bad_request(format!(
                "{id}: the new name must be a string."
            )));
        };
        if !name_ok(&name) {
            return Err(Error::bad_request(format!(
                "{id}: a name has 1 to 255 characters."
            )));
        }
        items.push((InstanceId::from_trusted(id), name));
    }
    Ok(items)
}

/// The items of `POST /images` (6.3).
pub fn snapshot_items(body: Value) -> Parsed<Vec<SnapshotItem>> {
    let Value::Array(items) = body else {
        return Err(Error::bad_request(
            "The request body must be a JSON array of images.",
        ));
    };
    let mut parsed = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let at = format!("[{i}]");
        if !it.is_object() {
            return Err(Error::bad_request(format!("{at}: an image must be an object.")));
        }
        let (Some(name), Some(instance)) = (str_at(it, &["name"]), str_at(it, &["instanceId"])) else {
            return Err(Error::bad_request(format!(
                "{at}: 'name' and 'instanceId' are required strings."
            )));
        };
        if !name_ok(name) {
            return Err(Error::bad_request(format!("{at}.name: 1 to 255 characters.")));
        }
        let projects: Option<Vec<String>> = match it.get("projectId").or_else(|| it.get("projectIds")) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|p| {
                        p.as_str().map(str::to_string).ok_or_else(|| {
                            Error::bad_request(format!("{at}.projectId: an array of strings."))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(Value::String(p)) => Some(vec![p.clone()]),
            Some(_) => {
                return Err(Error::bad_request(format!(
                    "{at}.projectId: an array of strings."
                )));
            }
        };
        parsed.push(SnapshotItem {
            name: name.to_string(),
            instance: InstanceId::from_trusted(instance),
            projects,
            metadata: metadata(it.get("metadata"), &at)?,
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
        match r {
            Ok(v) => format!("unexpected success: {v:?}"),
            Err(e) => e.external_message(),
        }
    }

    #[test]
    fn shapes_answer_the_contract_texts() {
        assert_eq!(
            msg(instance_ids(json!([1]))),
            "The request body must be a JSON array of ids (strings)."
        );
        assert_eq!(
            msg(launch_items(
                json!([{"name": "x", "projectId": "p", "flavor": "s"}])
            )),
            "[0].flavor.id: a string is required."
        );
        assert_eq!(
            msg(launch_items(
                json!([{"name": "x", "projectId": "p", "flavor": {"id": "f"},
                "image": {"id": "i"}, "metadata": {"bad key": "v"}}])
            )),
            "[0].metadata: invalid key 'bad key': use 1 to 255 of A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            msg(rename_items(json!({"x": ""}))),
            "x: a name has 1 to 255 characters."
        );
        assert_eq!(
            msg(snapshot_items(json!([{"name": "x"}]))),
            "[0]: 'name' and 'instanceId' are required strings."
        );
        let items = launch_items(
            json!([{"name": "x", "projectId": "p", "flavor": {"id": "f"}, "image": {"id": "i"},
                    "keypairs": [{"name": "k"}], "metadata": {"entry": [{"key": "a", "value": "b"}]}}]),
        );
        let Ok(items) = items else {
            panic!("{}", msg(items));
        };
        assert_eq!(items[0].keypair.as_deref(), Some("k"));
        assert_eq!(items[0].image.as_str(), "i");
        assert_eq!(items[0].metadata.entry[0].key, "a");
    }

    #[test]
    fn outcomes_render_as_per_item_statuses() {
        let got = bulk_results(vec![
            BulkItem {
                id: Some(InstanceId::from_trusted("a")),
                outcome: BulkOutcome::Accepted("rebooting".into()),
            },
            BulkItem {
                id: Some(InstanceId::from_trusted("b")),
                outcome: BulkOutcome::Already("rebooting".into()),
            },
            BulkItem {
                id: Some(InstanceId::from_trusted("c")),
                outcome: BulkOutcome::NotFound("Instance with id = c not found".into()),
            },
            BulkItem {
                id: None,
                outcome: BulkOutcome::Conflict("Quota exceeded: vcpus".into()),
            },
        ]);
        let got: Vec<(&str, u16, &str)> = got
            .iter()
            .map(|r| (r.id.as_str(), r.status, r.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 202, "rebooting"),
                ("b", 202, "already rebooting"),
                ("c", 404, "Instance with id = c not found"),
                ("", 409, "Quota exceeded: vcpus"),
            ]
        );
    }
}
