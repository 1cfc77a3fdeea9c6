//! The OpenAPI document: global metadata and security schemes. Paths come from the
//! `#[utoipa::path]` annotations registered in `routes`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Corral",
        description = "Multi-tenant infrastructure control plane. One API for Coopr (/v2), Commissaire (/api/v0), \
                       Perspective (/query, /instances, /images) and CDAP (/v3) clients.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    paths(crate::routes::cdap_routing::methods_doc, crate::routes::cdap_routing::methods_version_doc),
    security(("bearer" = []), ("basic" = []), ("coopr" = [])),
    tags(
        (name = "system", description = "Health, version, tokens, metrics"),
        (name = "coopr", description = "Coopr v2: tenants, users, API keys, profile"),
        (name = "cdap", description = "CDAP v3: namespaces, applications, services"),
        (name = "commissaire", description = "Commissaire v0: clusters, hosts, networks, container managers"),
        (name = "perspective", description = "Perspective: instances, images, operations, SQL query"),
        (name = "events", description = "Corral's change feed: watch a tenant's changes, follow asynchronous requests"),
        (name = "console", description = "The web console's session (sign-in with an API key, a cookie, CSRF tokens); its pages are under /ui")
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (crk_...) or an access token (crt_...) from GET /token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("user@tenant as the user name, an API key as the password."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "coopr",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Coopr-ApiKey",
                "Coopr's headers: Coopr-UserID, Coopr-TenantID and Coopr-ApiKey, all three together.",
            ))),
        );
    }
}

/// The document as served at `/openapi.json` and committed under `openapi/`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = crate::routes::router().split_for_parts();
    complete(&mut api);
    api
}

/// What every document gets after the routes are collected: the version, and the error
/// statuses the shared machinery answers for any operation of a kind, so that no
/// annotation can forget them (issue 13: 56 operations answered an undeclared 400).
pub(crate) fn complete(api: &mut utoipa::openapi::OpenApi) {
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    for item in api.paths.paths.values_mut() {
        let shared_params = item.parameters.clone().unwrap_or_default();
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ]
        .into_iter()
        .flatten()
        {
            declare_shared_statuses(op, &shared_params);
        }
    }
}

/// The statuses an operation answers whatever its handler does:
/// - 400: a path parameter (`Params`), a query or a body (`JsonBody`) it refuses;
/// - 401 and 403: it needs credentials (a role or a policy may refuse a valid one);
/// - 404: it names an object by a path parameter;
/// - 408 and 413: it takes a body, which may arrive too slowly or exceed `max_body_bytes`.
fn declare_shared_statuses(
    op: &mut utoipa::openapi::path::Operation,
    shared: &[utoipa::openapi::path::Parameter],
) {
    use utoipa::openapi::path::ParameterIn;
    let params: Vec<&utoipa::openapi::path::Parameter> =
        shared.iter().chain(op.parameters.iter().flatten()).collect();
    let public = op.security.as_ref().is_some_and(|reqs| {
        reqs.iter()
            .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
    });
    let body = op.request_body.is_some();
    let path_ids = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let mut add = Vec::new();
    if !params.is_empty() || body {
        add.push((
            "400",
            "The path, query or body is not one the contract accepts (the message says which part).",
        ));
    }
    if !public {
        add.push(("401", "Missing or invalid credentials."));
        add.push(("403", "The caller's role (or a policy) does not allow this."));
    }
    if path_ids {
        add.push(("404", "No such object in the caller's tenant."));
    }
    if body {
        add.push((
            "408",
            "The body did not arrive within `server.body_read_timeout`.",
        ));
        add.push(("413", "The body exceeds `max_body_bytes`."));
    }
    let responses = &mut op.responses.responses;
    for (status, why) in add {
        if !responses.contains_key(status) {
            responses.insert(status.to_string(), error_response(why));
        }
    }
    let mut sorted: Vec<_> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    *responses = sorted.into_iter().collect();
}

/// A response with the contract's JSON error body (README 4).
fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}
