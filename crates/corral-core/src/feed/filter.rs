//! Which events a watcher receives: its tenant (by construction: the hub keeps watchers by
//! tenant), what its role may read, and the query's `types`, `ids` and `namespace`.

use std::collections::HashSet;

use corral_types::{Error, ObjectType, Role};

use super::FeedEvent;

/// The query of `GET /events`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedQuery {
    /// Events with a revision above this; `None`: from the current head.
    pub since: Option<i64>,
    pub types: Option<Vec<ObjectType>>,
    pub ids: Option<Vec<String>>,
    pub namespace: Option<String>,
}

impl FeedQuery {
    /// Parses the query's values with the API's 400 texts. `last_event_id` (the header a
    /// reconnecting browser sends) wins over `since`.
    pub fn parse(
        since: Option<&str>,
        last_event_id: Option<&str>,
        types: Option<&str>,
        ids: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<FeedQuery, Error> {
        let revision = |what: &str, v: &str| {
            v.trim().parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
                Error::bad_request(format!("{what} must be a revision (a whole number >= 0)."))
            })
        };
        let since = match (last_event_id.map(str::trim).filter(|v| !v.is_empty()), since) {
            (Some(id), _) => Some(revision("Last-Event-ID", id)?),
            (None, Some(s)) => Some(revision("since", s)?),
            (None, None) => None,
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let types = types
            .map(|v| {
                list(v)
                    .iter()
                    .map(|t| {
                        ObjectType::parse(t).ok_or_else(|| {
                            let known: Vec<&str> = ObjectType::ALL.iter().map(|t| t.as_str()).collect();
                            Error::bad_request(format!("Unknown type '{t}' (known: {}).", known.join(", ")))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(FeedQuery {
            since,
            types,
            ids: ids.map(list),
            namespace: namespace.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
        })
    }
}

#[derive(Debug)]
pub(super) struct Filter {
    role: Role,
    types: Option<Vec<ObjectType>>,
    ids: Option<HashSet<String>>,
    namespace: Option<String>,
}

impl Filter {
    pub(super) fn new(role: Role, q: &FeedQuery) -> Filter {
        Filter {
            role,
            types: q.types.clone(),
            ids: q.ids.as_ref().map(|ids| ids.iter().cloned().collect()),
            namespace: q.namespace.clone(),
        }
    }

    pub(super) fn matches(&self, ev: &FeedEvent) -> bool {
        let Some(t) = ev.object_type else {
            return false;
        };
        t.readable_by(self.role)
            && self.types.as_ref().is_none_or(|ts| ts.contains(&t))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&ev.object_id))
            && self.namespace.as_ref().is_none_or(|ns| *ns == ev.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::TenantId;

    fn ev(t: &str, id: &str, ns: &str) -> FeedEvent {
        FeedEvent {
            revision: 1,
            kind: format!("{t}.updated"),
            tenant: TenantId::from_trusted("t"),
            object_type: ObjectType::parse(t),
            object_id: id.into(),
            namespace: ns.into(),
            json: String::new(),
        }
    }

    #[test]
    fn the_query_parses_with_last_event_id_first() {
        let q = FeedQuery::parse(
            Some("3"),
            Some("9"),
            Some("instance, host"),
            Some("a,b"),
            Some("dev"),
        )
        .unwrap();
        assert_eq!(q.since, Some(9));
        assert_eq!(q.types, Some(vec![ObjectType::Instance, ObjectType::Host]));
        assert_eq!(q.ids, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(q.namespace.as_deref(), Some("dev"));
        assert_eq!(
            FeedQuery::parse(Some("3"), None, None, None, None).unwrap().since,
            Some(3)
        );
        for bad in [Some("-1"), Some("x")] {
            assert_eq!(
                FeedQuery::parse(bad, None, None, None, None)
                    .unwrap_err()
                    .status(),
                400
            );
        }
        let e = FeedQuery::parse(None, None, Some("instances"), None, None).unwrap_err();
        assert!(
            e.external_message().starts_with("Unknown type 'instances'"),
            "{e}"
        );
    }

    #[test]
    fn filters_by_role_type_id_and_namespace() {
        let all = Filter::new(Role::Viewer, &FeedQuery::default());
        assert!(all.matches(&ev("instance", "i", "")));
        assert!(!all.matches(&ev("user", "bob", "")));
        assert!(!all.matches(&ev("tenant", "x", "")));
        let admin = Filter::new(Role::Admin, &FeedQuery::default());
        assert!(admin.matches(&ev("key", "k", "")));
        let q = FeedQuery::parse(None, None, Some("app"), Some("a1"), Some("dev")).unwrap();
        let f = Filter::new(Role::User, &q);
        assert!(f.matches(&ev("app", "a1", "dev")));
        assert!(!f.matches(&ev("app", "a2", "dev")));
        assert!(!f.matches(&ev("app", "a1", "prod")));
        assert!(!f.matches(&ev("service", "a1", "dev")));
    }
}
