//! The change log's views (docs/events.md): each changed row rendered as the view a `GET`
//! of it answers, by the same functions the `GET`s use, so the feed and the API never
//! disagree on an object's shape.

use corral_store::{ChangeViews, Changed};
use serde::Serialize;
use serde_json::{Value, json};

use crate::named::NamedKind;
use crate::networks::{ContainerManagers, Networks};
use crate::{apps, clusters, hosts, identity, instances, namespaces, operations, services};

/// Installed in the store by [`crate::Core::new`].
pub(crate) struct CoreViews;

fn to_value<T: Serialize>(v: Result<T, corral_types::Error>) -> Value {
    match v.map(serde_json::to_value) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a change view did not serialise");
            Value::Null
        }
        Err(e) => {
            tracing::error!(error = ?e, "a changed row has no view");
            Value::Null
        }
    }
}

impl ChangeViews for CoreViews {
    fn view_text(&self, row: Changed<'_>) -> String {
        let text = match row {
            Changed::Instance(r) => instances::instance_view(r).map(|v| serde_json::to_string(&v)),
            Changed::Image(r) => instances::image_view(r).map(|v| serde_json::to_string(&v)),
            other => return self.view(other).to_string(),
        };
        match text {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a change view did not serialise");
                "null".into()
            }
            Err(e) => {
                tracing::error!(error = ?e, "a changed row has no view");
                "null".into()
            }
        }
    }

    fn view(&self, row: Changed<'_>) -> Value {
        match row {
            Changed::User(tenant, r) => to_value(identity::user_view(tenant, r.clone())),
            Changed::Key(user, r) => {
                let mut v = to_value(Ok(identity::key_view(r.clone())));
                if let Some(o) = v.as_object_mut() {
                    o.insert("user".into(), json!(user));
                }
                v
            }
            Changed::Host(r) => to_value(Ok(hosts::host_view(r))),
            Changed::Cluster(r) => to_value(Ok(clusters::cluster_view(r, true))),
            Changed::Network(r) => to_value(Networks::view(r.clone())),
            Changed::ContainerManager(r) => to_value(ContainerManagers::view(r.clone())),
            Changed::Operation(r) => {
                let mut v = operations::record_view(r);
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), json!(r.kind.as_str()));
                }
                v
            }
            Changed::Instance(r) => to_value(instances::instance_view(r)),
            Changed::Image(r) => to_value(instances::image_view(r)),
            Changed::Namespace(r) => to_value(namespaces::view(r.clone())),
            Changed::App(_, r) => to_value(apps::detail(r)),
            Changed::ServiceRun(s, r) => {
                let mut v = to_value(Ok(services::run_record(r.clone())));
                if let Some(o) = v.as_object_mut() {
                    o.insert("namespace".into(), json!(s.namespace));
                    o.insert("app".into(), json!(s.app));
                    o.insert("version".into(), json!(s.version));
                    o.insert("service".into(), json!(s.service));
                }
                v
            }
        }
    }
}
