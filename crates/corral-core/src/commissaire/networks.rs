//! Commissaire networks and container manager configurations (commissaire-v0.md 2.5, 2.6,
//! 5.7-5.14): the two kinds of the named-object flow (`named.rs`), which answers the `PUT`
//! (201, 200 for the same settings again, 409 for others), the reads and the delete.
//!
//! Input is normalised before it is stored or compared: the accepted alternative spellings
//! (`flanneld_service`, `server_url`) become the emitted ones (README 7) and a flannel server
//! address takes its canonical form, so that every spelling of the same settings is "the
//! same" for the idempotent re-`PUT`. A container manager's token never sits in `options`: it
//! is sealed with the server key into its own column and answered masked.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use corral_store::{ContainerManagerRow, NetworkRow};
use corral_types::views::{ContainerManager, ContainerManagerInput, Network, NetworkInput};
use corral_types::{Error, OpCtx, TenantId, TenantScope};
use serde_json::{Map, Value};

use crate::commissaire::Commissaire;
use crate::named::NamedKind;

type Options = Map<String, Value>;

const FLANNEL_ETCD: &str = "flannel_etcd";
const FLANNEL_SERVER: &str = "flannel_server";
/// The real Commissaire's spelling of `flannel_server` (README 7).
const FLANNELD_SERVICE: &str = "flanneld_service";
const OPENSHIFT: &str = "openshift";
const TRIVIAL: &str = "trivial";
const DEFAULT_NETWORK: &str = "default";
/// What a stored token is answered as (commissaire-v0.md 2.6).
const MASK: &str = "********";

const APISERVER: &str = "apiserver";
/// The real Commissaire's spelling of `apiserver` (README 7).
const SERVER_URL: &str = "server_url";
const TOKEN: &str = "token";
const CERT: &str = "certificate_path";
const CERT_KEY: &str = "certificate_key_path";
/// Corral addition: the CA that signed the API server's certificate (clusters use their own).
const CA: &str = "ca_path";

/// A container manager as the code that registers nodes needs it: the token decrypted and the
/// certificate files resolved inside `cert_dir`. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ContainerManagerConfig {
    pub name: String,
    pub kind: ContainerManagerKind,
    /// The API server URL (`openshift` only).
    pub apiserver: Option<String>,
    /// The bearer token, decrypted (`openshift` only, when one was given).
    pub token: Option<String>,
    /// The client certificate, `cert_dir` joined with the stored file name.
    pub certificate_path: Option<PathBuf>,
    /// The client certificate's key, `cert_dir` joined with the stored file name.
    pub certificate_key_path: Option<PathBuf>,
    /// The API server's CA certificate, `cert_dir` joined with the stored file name.
    pub ca_path: Option<PathBuf>,
}

impl std::fmt::Debug for ContainerManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerManagerConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("apiserver", &self.apiserver)
            .field("token", &self.token.as_ref().map(|_| MASK))
            .field("certificate_path", &self.certificate_path)
            .field("certificate_key_path", &self.certificate_key_path)
            .finish()
    }
}

/// The container manager types of commissaire-v0.md 2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerManagerKind {
    /// An OpenShift/Kubernetes API (v1).
    OpenShift,
    /// Registration, removal and status always succeed.
    Trivial,
}

fn parse_options(text: &str) -> Result<Options, Error> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("stored options are not an object: {e}")))
}

/// The associated data a container manager token is sealed with: a sealed token copied to
/// another row or tenant does not open.
fn token_context(tenant: &TenantId, name: &str) -> String {
    format!("cm-token:{tenant}:{name}")
}

/// Type and options of a network `PUT`, normalised (2.5).
fn normalize_network(input: NetworkInput) -> Result<(&'static str, Options), Error> {
    let kind = match input.kind.as_deref() {
        None | Some(FLANNEL_ETCD) => FLANNEL_ETCD,
        Some(FLANNEL_SERVER) | Some(FLANNELD_SERVICE) => FLANNEL_SERVER,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "Unknown network type '{other}': use {FLANNEL_ETCD} or {FLANNEL_SERVER}."
            )));
        }
    };
    let mut options = input.options.unwrap_or_default();
    if kind == FLANNEL_SERVER {
        let address = match options.get("address") {
            Some(Value::String(a)) => {
                canonical_host_port(a).ok_or_else(|| {
                    Error::bad_request(format!(
                        "Invalid options.address '{a}': use \"host:port\" with a host address and a port from 1 to 65535."
                    ))
                })?
            }
            Some(Value::Null) | None => {
                return Err(Error::bad_request(
                    "Network type 'flannel_server' requires options.address (\"host:port\").",
                ));
            }
            Some(_) => return Err(Error::bad_request("options.address must be a string.")),
        };
        options.insert("address".into(), Value::String(address));
    }
    Ok((kind, options))
}

/// A container manager `PUT`, normalised (2.6): the options to store in clear, and the token.
pub(crate) struct CmRequest {
    kind: &'static str,
    options: Options,
    token: Option<String>,
}

/// A string option; `null` counts as absent.
fn string_option(options: &Options, key: &str) -> Result<Option<String>, Error> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::bad_request(format!("options.{key} must be a string."))),
    }
}

/// Only the documented options are kept: they are returned to every reader of the tenant,
/// so nothing unvetted (a password under another key) is stored in clear.
fn normalize_cm(input: ContainerManagerInput, cert_dir: Option<&Path>) -> Result<CmRequest, Error> {
    let kind = match input.kind.as_deref() {
        Some(OPENSHIFT) => OPENSHIFT,
        Some(TRIVIAL) => TRIVIAL,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "Unknown container manager type '{other}': use {OPENSHIFT} or {TRIVIAL}."
            )));
        }
        None => {
            return Err(Error::bad_request(format!(
                "A container manager type is required: use {OPENSHIFT} or {TRIVIAL}."
            )));
        }
    };
    if kind == TRIVIAL {
        return Ok(CmRequest {
            kind,
            options: Options::new(),
            token: None,
        });
    }
    let given = input.options.unwrap_or_default();
    let apiserver = match (
        string_option(&given, APISERVER)?,
        string_option(&given, SERVER_URL)?,
    ) {
        (Some(a), Some(s)) if a != s => {
            return Err(Error::bad_request(
                "options.apiserver and options.server_url differ: give one of them.",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(Error::bad_request(
                "Container manager type 'openshift' requires options.apiserver (an http or https URL).",
            ));
        }
    };
    if !valid_http_url(&apiserver) {
        return Err(Error::bad_request(format!(
            "Invalid options.apiserver '{apiserver}': use an http or https URL."
        )));
    }
    let token = string_option(&given, TOKEN)?;
    let mut options = Options::new();
    options.insert(APISERVER.into(), Value::String(apiserver));
    match (string_option(&given, CERT)?, string_option(&given, CERT_KEY)?) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            if cert_dir.is_none() {
                return Err(Error::bad_request(
                    "Certificate files are not accepted: the server setting cert_dir is not set.",
                ));
            }
            for file in [&cert, &key] {
                if !plain_file_name(file) {
                    return Err(Error::bad_request(format!(
                        "Invalid certificate file name '{}': use a plain file name inside the server's certificate directory.",
                        file.escape_default()
                    )));
                }
            }
            options.insert(CERT.into(), Value::String(cert));
            options.insert(CERT_KEY.into(), Value::String(key));
        }
        _ => {
            return Err(Error::bad_request(
                "options.certificate_path and options.certificate_key_path go together: give both or neither.",
            ));
        }
    }
    if let Some(ca) = string_option(&given, CA)? {
        if cert_dir.is_none() {
            return Err(Error::bad_request(
                "Certificate files are not accepted: the server setting cert_dir is not set.",
            ));
        }
        if !plain_file_name(&ca) {
            return Err(Error::bad_request(format!(
                "Invalid certificate file name '{}': use a plain file name inside the server's certificate directory.",
                ca.escape_default()
            )));
        }
        options.insert(CA.into(), Value::String(ca));
    }
    Ok(CmRequest { kind, options, token })
}

/// A file name that stays inside the directory it is joined to: no separator, no `..`, not
/// absolute, nothing invisible.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && !name.contains("..")
        && !name.contains('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && !Path::new(name).is_absolute()
}

/// The canonical host of README 6.3 as written before `:port`: IPv4 as is (leading zeros
/// refused), IPv6 compressed and in brackets (IPv4-mapped becomes IPv4), DNS names lower case
/// without the trailing dot. A private stand-in for the full canonicaliser of hosts.
fn canonical_host(host: &str, bracketed: bool) -> Option<String> {
    if bracketed {
        let v6: Ipv6Addr = host.parse().ok()?;
        return Some(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        });
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && host.contains('.') {
        // Looks like IPv4: then it must be a dotted quad exactly as std prints it.
        let v4: Ipv4Addr = host.parse().ok()?;
        return (v4.to_string() == host).then(|| host.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label)).then(|| name.to_ascii_lowercase())
}

/// Splits `host:port` (`[v6]:port` for IPv6) into the canonical host and a port 1..65535.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port, bracketed) = match s.strip_prefix('[') {
        Some(rest) => {
            let (h, p) = rest.split_once("]:")?;
            (h, p, true)
        }
        None => {
            let (h, p) = s.rsplit_once(':')?;
            (h, p, false)
        }
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((canonical_host(host, bracketed)?, port))
}

/// `host:port` in canonical form, or `None` when `s` is not one.
fn canonical_host_port(s: &str) -> Option<String> {
    split_host_port(s).map(|(host, port)| format!("{host}:{port}"))
}

/// An absolute `http` or `https` URL with a valid host, an optional port and no user info
/// (credentials belong in `token`, which is sealed; a URL is stored and shown in clear).
fn valid_http_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    if authority.starts_with('[') && authority.ends_with(']') {
        return canonical_host(&authority[1..authority.len() - 1], true).is_some();
    }
    if authority.contains(':') {
        return split_host_port(authority).is_some();
    }
    canonical_host(authority, false).is_some()
}

/// The network kind of the named-object flow (2.5).
pub(crate) struct Networks;

impl NamedKind for Networks {
    type Row = NetworkRow;
    type Input = NetworkInput;
    /// The normalised type and options.
    type Settings = (&'static str, Options);
    type View = Network;
    const NOUN: &'static str = "Network";

    fn body_name(input: &NetworkInput) -> Option<&str> {
        input.name.as_deref()
    }

    fn normalize(
        _core: &Commissaire,
        _tenant: &TenantScope,
        name: &str,
        input: NetworkInput,
    ) -> Result<(NetworkRow, Self::Settings), Error> {
        let (kind, options) = normalize_network(input)?;
        let row = NetworkRow {
            name: name.to_string(),
            kind: kind.to_string(),
            options: serde_json::to_string(&options).map_err(Error::internal)?,
        };
        Ok((row, (kind, options)))
    }

    fn same(
        _core: &Commissaire,
        _tenant: &TenantScope,
        stored: &NetworkRow,
        settings: &Self::Settings,
    ) -> Result<bool, Error> {
        let (kind, options) = settings;
        Ok(stored.kind == *kind && parse_options(&stored.options)? == *options)
    }

    fn view(r: NetworkRow) -> Result<Network, Error> {
        Ok(Network {
            options: parse_options(&r.options)?,
            name: r.name,
            kind: r.kind,
        })
    }

    fn check_delete(name: &str) -> Result<(), Error> {
        if name == DEFAULT_NETWORK {
            // `default` exists in every tenant (README 2.4), so existence is already settled.
            return Err(Error::conflict("Network 'default' cannot be deleted."));
        }
        Ok(())
    }
}

/// The container manager kind of the named-object flow (2.6): the token is sealed into its
/// own column, compared in clear on a re-`PUT` (so the same token is "the same"), answered
/// masked.
pub(crate) struct ContainerManagers;

impl NamedKind for ContainerManagers {
    type Row = ContainerManagerRow;
    type Input = ContainerManagerInput;
    type Settings = CmRequest;
    type View = ContainerManager;
    const NOUN: &'static str = "Container manager";

    fn body_name(input: &ContainerManagerInput) -> Option<&str> {
        input.name.as_deref()
    }

    fn normalize(
        core: &Commissaire,
        tenant: &TenantScope,
        name: &str,
        input: ContainerManagerInput,
    ) -> Result<(ContainerManagerRow, CmRequest), Error> {
        let req = normalize_cm(input, core.settings.cert_dir.as_deref())?;
        let token_sealed = match &req.token {
            Some(t) => core
                .secrets
                .seal(&token_context(tenant.id(), name), t.as_bytes())?,
            None => String::new(),
        };
        let row = ContainerManagerRow {
            name: name.to_string(),
            kind: req.kind.to_string(),
            options: serde_json::to_string(&req.options).map_err(Error::internal)?,
            token_sealed,
        };
        Ok((row, req))
    }

    fn same(
        core: &Commissaire,
        tenant: &TenantScope,
        stored: &ContainerManagerRow,
        req: &CmRequest,
    ) -> Result<bool, Error> {
        Ok(stored.kind == req.kind
            && parse_options(&stored.options)? == req.options
            && open_token(
                &core.secrets,
                &token_context(tenant.id(), &stored.name),
                &stored.token_sealed,
            )? == req.token)
    }

    fn view(r: ContainerManagerRow) -> Result<ContainerManager, Error> {
        let mut options = parse_options(&r.options)?;
        if !r.token_sealed.is_empty() {
            options.insert(TOKEN.into(), Value::String(MASK.into()));
        }
        Ok(ContainerManager {
            name: r.name,
            kind: r.kind,
            options,
        })
    }
}

impl Commissaire {
    /// `GET /api/v0/networks`: the tenant's network names, by byte value.
    pub async fn list_networks(&self, ctx: &OpCtx) -> Result<Vec<String>, Error> {
        self.list_named::<Networks>(ctx).await
    }

    pub async fn get_network(&self, ctx: &OpCtx, name: &str) -> Result<Network, Error> {
        self.get_named::<Networks>(ctx, name).await
    }

    /// Creates a network; answers it and whether it was created (201) or already there with
    /// the same settings (200).
    pub async fn put_network(
        &self,
        ctx: &OpCtx,
        name: &str,
        input: NetworkInput,
    ) -> Result<(Network, bool), Error> {
        self.put_named::<Networks>(ctx, name, input).await
    }

    pub async fn delete_network(&self, ctx: &OpCtx, name: &str) -> Result<(), Error> {
        self.delete_named::<Networks>(ctx, name).await
    }

    /// `GET /api/v0/containermanagers`: the tenant's container manager names, by byte value.
    pub async fn list_container_managers(&self, ctx: &OpCtx) -> Result<Vec<String>, Error> {
        self.list_named::<ContainerManagers>(ctx).await
    }

    pub async fn get_container_manager(&self, ctx: &OpCtx, name: &str) -> Result<ContainerManager, Error> {
        self.get_named::<ContainerManagers>(ctx, name).await
    }

    /// Creates a container manager configuration; answers it (token masked) and whether it
    /// was created (201) or already there with the same settings, real token included (200).
    pub async fn put_container_manager(
        &self,
        ctx: &OpCtx,
        name: &str,
        input: ContainerManagerInput,
    ) -> Result<(ContainerManager, bool), Error> {
        self.put_named::<ContainerManagers>(ctx, name, input).await
    }

    pub async fn delete_container_manager(&self, ctx: &OpCtx, name: &str) -> Result<(), Error> {
        self.delete_named::<ContainerManagers>(ctx, name).await
    }
}

/// Decrypts a stored token; `""` means none was given.
fn open_token(
    secrets: &crate::crypto::SecretBox,
    context: &str,
    sealed: &str,
) -> Result<Option<String>, Error> {
    if sealed.is_empty() {
        return Ok(None);
    }
    let plain = secrets.open(context, sealed)?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(|_| Error::internal("a stored container manager token is not UTF-8"))
}

/// A stored container manager with its token opened and certificate files resolved in
/// `cert_dir`; shared by core and the host jobs (which have no `Core`).
pub(crate) async fn container_manager_config(
    store: &corral_store::Store,
    secrets: &crate::crypto::SecretBox,
    cert_dir: Option<&std::path::Path>,
    tenant: &TenantScope,
    name: &str,
) -> Result<Option<ContainerManagerConfig>, Error> {
    let Some(row) = store.named::<ContainerManagerRow>().get(tenant, name).await? else {
        return Ok(None);
    };
    let kind = match row.kind.as_str() {
        OPENSHIFT => ContainerManagerKind::OpenShift,
        TRIVIAL => ContainerManagerKind::Trivial,
        other => {
            return Err(Error::internal(format!(
                "stored container manager type {other:?}"
            )));
        }
    };
    let options = parse_options(&row.options)?;
    let text = |key: &str| options.get(key).and_then(Value::as_str).map(str::to_string);
    let resolve = |key: &str| -> Result<Option<PathBuf>, Error> {
        match (text(key), cert_dir) {
            (None, _) => Ok(None),
            // Checked again: rows copied between tenants by SQL never passed `normalize_cm`.
            (Some(file), Some(dir)) if plain_file_name(&file) => Ok(Some(dir.join(file))),
            (Some(file), Some(_)) => Err(Error::conflict(format!(
                "Container manager '{name}' names the certificate file '{}', which is not a plain file name.",
                file.escape_default()
            ))),
            (Some(_), None) => Err(Error::conflict(format!(
                "Container manager '{name}' names certificate files, but the server setting cert_dir is not set."
            ))),
        }
    };
    Ok(Some(ContainerManagerConfig {
        name: row.name.clone(),
        kind,
        apiserver: text(APISERVER),
        token: open_token(secrets, &token_context(tenant.id(), name), &row.token_sealed)?,
        certificate_path: resolve(CERT)?,
        certificate_key_path: resolve(CERT_KEY)?,
        ca_path: resolve(CA)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_canonicalised() {
        for (given, want) in [
            ("192.168.152.101:8080", "192.168.152.101:8080"),
            ("Flannel.Example.COM.:80", "flannel.example.com:80"),
            ("[FE80::0:0:1]:65535", "[fe80::1]:65535"),
            ("[::ffff:10.0.0.1]:1", "10.0.0.1:1"),
            ("localhost:08", "localhost:8"),
        ] {
            assert_eq!(canonical_host_port(given).as_deref(), Some(want), "{given}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:0",
            "host:65536",
            "host:+80",
            "host:80x",
            "01.2.3.4:80",
            "1.2.3.256:80",
            "1.2.3:80",
            "fe80::1:80",
            "[fe80::1]",
            "[fe80::1]80",
            "[not-v6]:80",
            "-bad.example:80",
            "a_b.example:80",
            "a..b:80",
            "host name:80",
        ] {
            assert_eq!(canonical_host_port(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn apiserver_urls() {
        for ok in [
            "https://192.168.152.101:8080/api/",
            "http://k8s",
            "HTTPS://k8s.example.com:6443",
            "https://[::1]:6443/x?y#z",
            "https://[::1]",
        ] {
            assert!(valid_http_url(ok), "{ok} refused");
        }
        for bad in [
            "",
            "k8s:6443",
            "ftp://k8s",
            "https://",
            "https:///api",
            "https://user:pw@k8s",
            "https://k8s:0",
            "https://k8s:x",
            "https://k 8s",
            "https://k8s/a b",
            "https://01.1.1.1",
        ] {
            assert!(!valid_http_url(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn certificate_file_names_stay_inside_the_directory() {
        for ok in ["client.crt", "client-key.pem", ".hidden", "a.b.c"] {
            assert!(plain_file_name(ok), "{ok} refused");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "/etc/ssl/key.pem",
            "a..b",
            "a\\b",
            "a\nb",
        ] {
            assert!(!plain_file_name(bad), "{bad:?} accepted");
        }
    }

    fn input(kind: Option<&str>, options: Value) -> ContainerManagerInput {
        ContainerManagerInput {
            name: None,
            kind: kind.map(str::to_string),
            options: options.as_object().cloned(),
        }
    }

    #[test]
    fn container_manager_options_are_normalised() {
        let dir = Path::new("/srv/certs");
        let req = normalize_cm(
            input(
                Some(OPENSHIFT),
                serde_json::json!({"server_url": "https://k8s", "token": "s3cret", "extra": 1,
                                   "certificate_path": "c.pem", "certificate_key_path": "k.pem"}),
            ),
            Some(dir),
        )
        .unwrap();
        assert_eq!(req.kind, OPENSHIFT);
        assert_eq!(req.token.as_deref(), Some("s3cret"));
        assert_eq!(
            Value::Object(req.options),
            serde_json::json!({"apiserver": "https://k8s", "certificate_path": "c.pem", "certificate_key_path": "k.pem"})
        );
        let trivial = normalize_cm(input(Some(TRIVIAL), serde_json::json!({"token": "x"})), None).unwrap();
        assert!(trivial.options.is_empty() && trivial.token.is_none());
        let certs = serde_json::json!({"apiserver": "https://k8s", "certificate_path": "c", "certificate_key_path": "k"});
        assert!(normalize_cm(input(Some(OPENSHIFT), certs), None).is_err());
    }

    #[tokio::test]
    async fn container_manager_for_cluster_opens_the_token_and_resolves_files() {
        use corral_store::Store;
        use corral_types::{ApiKeyId, Principal, Role, TenantRef, UserName};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::open(&url, 2).await.unwrap();
        let settings = crate::CoreSettings {
            cert_dir: Some(PathBuf::from("/srv/certs")),
            ..Default::default()
        };
        let app = crate::Core::new(
            store.clone(),
            settings,
            crate::crypto::SecretBox::from_key(&[3u8; 32]).unwrap(),
        );
        app.identity()
            .bootstrap(dir.path(), Some(&"k".repeat(40)))
            .await
            .unwrap();
        let core = app.commissaire();
        let tenant = store.get_tenant("superadmin").await.unwrap().unwrap();
        let ctx = OpCtx::new(
            Principal {
                tenant: TenantRef {
                    id: tenant.id.clone(),
                    name: corral_types::TenantName::from_trusted(tenant.name.clone()),
                },
                user: UserName::from_trusted("admin".into()),
                role: Role::Admin,
                api_key: ApiKeyId::new(),
            },
            "test",
        );
        let scope = ctx.require(corral_types::Access::Read).unwrap();
        let (view, created) = core
            .put_container_manager(
                &ctx,
                "k8s",
                input(
                    Some(OPENSHIFT),
                    serde_json::json!({"apiserver": "https://k8s:6443", "token": "t0ken",
                                       "certificate_path": "c.pem", "certificate_key_path": "k.pem"}),
                ),
            )
            .await
            .unwrap();
        assert!(created);
        assert_eq!(view.options[TOKEN], MASK);
        let cfg = container_manager_config(
            &core.store,
            &core.secrets,
            core.settings.cert_dir.as_deref(),
            &scope,
            "k8s",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(cfg.kind, ContainerManagerKind::OpenShift);
        assert_eq!(cfg.apiserver.as_deref(), Some("https://k8s:6443"));
        assert_eq!(cfg.token.as_deref(), Some("t0ken"));
        assert_eq!(cfg.certificate_path, Some(PathBuf::from("/srv/certs/c.pem")));
        assert_eq!(cfg.certificate_key_path, Some(PathBuf::from("/srv/certs/k.pem")));
        assert!(!format!("{cfg:?}").contains("t0ken"), "Debug shows the token");
        assert_eq!(
            container_manager_config(
                &core.store,
                &core.secrets,
                core.settings.cert_dir.as_deref(),
                &scope,
                ""
            )
            .await
            .unwrap(),
            None
        );
        assert_eq!(
            container_manager_config(
                &core.store,
                &core.secrets,
                core.settings.cert_dir.as_deref(),
                &scope,
                "nope"
            )
            .await
            .unwrap(),
            None
        );
        // Another tenant's id finds nothing.
        let other = TenantScope::background(TenantId::from_trusted("other"));
        assert_eq!(
            container_manager_config(
                &core.store,
                &core.secrets,
                core.settings.cert_dir.as_deref(),
                &other,
                "k8s"
            )
            .await
            .unwrap(),
            None
        );
        // The sealed token opens only under its own tenant (and name).
        let row = core
            .store
            .named::<ContainerManagerRow>()
            .get(&scope, "k8s")
            .await
            .unwrap()
            .unwrap();
        let open = |tenant: &TenantId, name: &str| {
            open_token(&core.secrets, &token_context(tenant, name), &row.token_sealed)
        };
        assert_eq!(open(scope.id(), "k8s").unwrap().as_deref(), Some("t0ken"));
        assert!(open(other.id(), "k8s").is_err());
        assert!(open(scope.id(), "k8s2").is_err());
    }
}
