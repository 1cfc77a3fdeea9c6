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
        (name = "events", description = "Corral's change feed: watch a tenant's changes, follow asynchronous requests")
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
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    api
}
