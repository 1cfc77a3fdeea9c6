//! Every route, family by family. Each `routes!` line registers handlers together with their
//! OpenAPI annotation, so nothing is served that the contract document does not list.

mod cdap;
mod coopr;
mod system;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::openapi::ApiDoc;

pub fn router() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::status))
        .routes(routes!(system::ping))
        .routes(routes!(system::version))
        .routes(routes!(system::token_get, system::token_post))
        .routes(routes!(system::metrics))
        .routes(routes!(coopr::list_tenants, coopr::create_tenant))
        .routes(routes!(
            coopr::get_tenant,
            coopr::update_tenant,
            coopr::delete_tenant
        ))
        .routes(routes!(coopr::issue_admin_key))
        .routes(routes!(coopr::list_users, coopr::create_user))
        .routes(routes!(coopr::get_user, coopr::update_user, coopr::delete_user))
        .routes(routes!(coopr::list_keys, coopr::create_key))
        .routes(routes!(coopr::get_key, coopr::delete_key))
        .routes(routes!(
            coopr::get_profile,
            coopr::put_profile,
            coopr::delete_profile
        ))
        .routes(routes!(cdap::list_namespaces))
        .routes(routes!(
            cdap::get_namespace,
            cdap::create_namespace,
            cdap::delete_namespace
        ))
        .routes(routes!(cdap::update_namespace_properties))
        .routes(routes!(cdap::delete_namespace_unrecoverable))
}
