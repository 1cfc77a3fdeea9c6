//! Every route, family by family. Each `routes!` line registers handlers together with their
//! OpenAPI annotation, so nothing is served that the contract document does not list.

mod cdap;
mod cdap_apps;
pub(crate) mod cdap_routing;
mod cdap_services;
mod commissaire;
mod commissaire_clusters;
mod commissaire_networks;
mod console;
mod coopr;
mod events;
mod perspective;
mod perspective_wire;
mod system;

use axum::routing::{any, get};
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
        .routes(routes!(system::whoami))
        .routes(routes!(events::events))
        .routes(routes!(
            console::get_session,
            console::post_session,
            console::delete_session
        ))
        .routes(routes!(coopr::list_tenants, coopr::create_tenant))
        .routes(routes!(
            coopr::get_tenant,
            coopr::update_tenant,
            coopr::delete_tenant
        ))
        .routes(routes!(coopr::issue_admin_key))
        .routes(routes!(coopr::get_cluster_statuses))
        .routes(routes!(coopr::get_node_properties))
        .routes(routes!(coopr::list_users, coopr::create_user))
        .routes(routes!(coopr::get_user, coopr::update_user, coopr::delete_user))
        .routes(routes!(coopr::list_keys, coopr::create_key))
        .routes(routes!(coopr::get_key, coopr::delete_key))
        .routes(routes!(
            coopr::get_profile,
            coopr::put_profile,
            coopr::delete_profile
        ))
        .routes(routes!(commissaire_clusters::list_clusters))
        .routes(routes!(commissaire_clusters::list_clusters_singular))
        .routes(routes!(
            commissaire_clusters::get_cluster,
            commissaire_clusters::put_cluster,
            commissaire_clusters::delete_cluster
        ))
        .routes(routes!(
            commissaire_clusters::get_members,
            commissaire_clusters::put_members
        ))
        .routes(routes!(
            commissaire_clusters::get_member,
            commissaire_clusters::put_member,
            commissaire_clusters::delete_member
        ))
        .routes(routes!(
            commissaire_clusters::get_deploy,
            commissaire_clusters::put_deploy
        ))
        .routes(routes!(
            commissaire_clusters::get_upgrade,
            commissaire_clusters::put_upgrade
        ))
        .routes(routes!(
            commissaire_clusters::get_restart,
            commissaire_clusters::put_restart
        ))
        .routes(routes!(commissaire::status))
        .routes(routes!(commissaire::list_hosts))
        .routes(routes!(
            commissaire::list_hosts_singular,
            commissaire::put_host_self
        ))
        .routes(routes!(
            commissaire::get_host,
            commissaire::put_host,
            commissaire::delete_host
        ))
        .routes(routes!(commissaire::host_creds))
        .routes(routes!(commissaire::host_status))
        .routes(routes!(cdap::list_namespaces))
        .routes(routes!(
            cdap::get_namespace,
            cdap::create_namespace,
            cdap::delete_namespace
        ))
        .routes(routes!(cdap::update_namespace_properties))
        .routes(routes!(cdap::delete_namespace_unrecoverable))
        .routes(routes!(cdap_apps::list_apps))
        .routes(routes!(
            cdap_apps::get_app,
            cdap_apps::put_app,
            cdap_apps::delete_app
        ))
        .routes(routes!(cdap_apps::list_app_versions))
        .routes(routes!(cdap_apps::get_app_version, cdap_apps::delete_app_version))
        .routes(routes!(cdap_apps::put_app_version, cdap_apps::post_app_version))
        .routes(routes!(cdap_apps::list_services))
        .routes(routes!(cdap_apps::get_service))
        .routes(routes!(cdap_apps::get_version_service))
        .routes(routes!(cdap_services::start))
        .routes(routes!(cdap_services::start_v))
        .routes(routes!(cdap_services::stop))
        .routes(routes!(cdap_services::stop_v))
        .routes(routes!(cdap_services::status))
        .routes(routes!(cdap_services::status_v))
        .routes(routes!(
            cdap_services::get_instances,
            cdap_services::put_instances
        ))
        .routes(routes!(
            cdap_services::get_instances_v,
            cdap_services::put_instances_v
        ))
        .routes(routes!(cdap_services::runs))
        .routes(routes!(cdap_services::runs_v))
        .routes(routes!(cdap_services::run))
        .routes(routes!(cdap_services::run_v))
        .routes(routes!(cdap_services::available))
        .routes(routes!(cdap_services::available_v))
        .routes(routes!(cdap_services::processes))
        .routes(routes!(cdap_services::processes_v))
        .routes(routes!(
            cdap_routing::get_route_config,
            cdap_routing::put_route_config,
            cdap_routing::delete_route_config
        ))
        .routes(routes!(cdap_routing::batch_start))
        .routes(routes!(cdap_routing::batch_stop))
        .routes(routes!(cdap_routing::batch_status))
        .routes(routes!(perspective::get_instance_singular))
        .routes(routes!(perspective::get_instance))
        .routes(routes!(perspective::instance_history))
        .routes(routes!(perspective::instance_console))
        .routes(routes!(perspective::launch))
        .routes(routes!(perspective::delete))
        .routes(routes!(perspective::start))
        .routes(routes!(perspective::shutdown))
        .routes(routes!(perspective::reboot))
        .routes(routes!(perspective::hard_reboot))
        .routes(routes!(perspective::pause))
        .routes(routes!(perspective::resume))
        .routes(routes!(perspective::suspend))
        .routes(routes!(perspective::resize))
        .routes(routes!(perspective::rebuild))
        .routes(routes!(perspective::rename))
        .routes(routes!(perspective::get_image_singular))
        .routes(routes!(perspective::get_image))
        .routes(routes!(perspective::create_images))
        .routes(routes!(perspective::delete_images))
        .routes(routes!(perspective::operations))
        .routes(routes!(perspective::query))
        .routes(routes!(commissaire_networks::list_networks))
        .routes(routes!(commissaire_networks::list_networks_singular))
        .routes(routes!(
            commissaire_networks::get_network,
            commissaire_networks::put_network,
            commissaire_networks::delete_network
        ))
        .routes(routes!(commissaire_networks::list_container_managers))
        .routes(routes!(commissaire_networks::list_container_managers_singular))
        .routes(routes!(
            commissaire_networks::get_container_manager,
            commissaire_networks::put_container_manager,
            commissaire_networks::delete_container_manager
        ))
        // `PUT /instances/{action}` with any other word: the contract's 404 (no such route), not
        // the 405 that `GET /instances/{id}` would otherwise make of it.
        .route("/instances/{id}", axum::routing::put(crate::middleware::no_route))
        // The web console's files, outside the document (docs/security.md).
        .route("/", get(crate::console::root).fallback(crate::console::get_only))
        .route(
            "/ui",
            get(crate::console::index).fallback(crate::console::get_only),
        )
        .route(
            "/ui/{*path}",
            get(crate::console::asset).fallback(crate::console::get_only),
        )
        // The method proxy: every method, with or without an endpoint path (cdap-v3.md 6.1).
        .route(METHODS, any(crate::proxy::proxy))
        .route(
            concat!("/v3/namespaces/{ns}/apps/{app}/services/{svc}/methods", "/"),
            any(crate::proxy::proxy),
        )
        .route(
            concat!(
                "/v3/namespaces/{ns}/apps/{app}/services/{svc}/methods",
                "/{*path}"
            ),
            any(crate::proxy::proxy),
        )
        .route(METHODS_V, any(crate::proxy::proxy))
        .route(
            concat!(
                "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/methods",
                "/"
            ),
            any(crate::proxy::proxy),
        )
        .route(
            concat!(
                "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/methods",
                "/{*path}"
            ),
            any(crate::proxy::proxy),
        )
}

const METHODS: &str = "/v3/namespaces/{ns}/apps/{app}/services/{svc}/methods";
const METHODS_V: &str = "/v3/namespaces/{ns}/apps/{app}/versions/{v}/services/{svc}/methods";
