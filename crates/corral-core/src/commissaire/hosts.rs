//! Commissaire hosts (commissaire-v0.md 5.1-5.6, 6.1): registration, the investigation and
//! bootstrap job, credentials, status.
//!
//! A host is registered with its base64 private key, which is sealed with the server key and
//! never logged. Registration enqueues the `host.investigate` job in the same transaction;
//! the job connects over SSH (trusting the host key on first use, or enforcing the expected
//! fingerprint given at registration), gathers the facts, runs the OS profile's bootstrap and
//! settles the host as `active`, `disassociated` or `failed` with a reason.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use corral_drivers::{
    ContainerManagerClient, HostKeyPolicy, HostTransport, KubeTarget, SshError, SshTarget, facts_command,
    parse_facts, shell_quote,
};
use corral_store::{
    CreateHostOutcome, DeleteHostOutcome, HostFacts, HostRow, HostState, JobRow, NewHost, Store,
};
use corral_types::commissaire::{Host, HostCreds, HostPut, HostStatus, HostStatusHost, NodeStatus};
use corral_types::time::{commissaire_time, now_ms};
use corral_types::{Access, ClusterName, Error, HostAddress, OpCtx, OperationKind, TenantId, TenantScope};
use serde::{Deserialize, Serialize};

use crate::address::{AddressPolicy, canonical_address};
use crate::commissaire::Commissaire;
use crate::crypto::SecretBox;
use crate::jobs::{JobCtx, JobError, JobHandler, new_job};
use crate::secrets;

/// The job that investigates and bootstraps a newly registered host.
pub const INVESTIGATE: &str = "host.investigate";

/// The commands of one operating system (spec 6.5). `{version}` in `deploy` is replaced by the
/// shell-quoted deploy version; `{flannel_line}` in `bootstrap` by flannel's setting for the
/// network of the host's cluster (or the tenant's `default` network), shell-quoted:
/// `FLANNEL_ETCD_ENDPOINTS="<flannel_etcd_endpoint>"` or `FLANNEL_OPTIONS="-remote=<address>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsProfile {
    /// `/etc/os-release` `ID` values this profile serves (the profile's name is one too).
    #[serde(default)]
    pub ids: Vec<String>,
    pub bootstrap: String,
    pub upgrade: String,
    pub restart: String,
    pub deploy: String,
}

/// Corral's built-in OS profiles; the configuration may override or add to them.
pub fn builtin_profiles() -> BTreeMap<String, OsProfile> {
    let restart = "sleep 2 && systemctl reboot".to_string();
    // `{flannel_line}` is flannel's setting for the host's network (spec 6.1 step 2);
    // flannel's packages wire docker to its network (step 3).
    let flannel_docker = "mkdir -p /etc/sysconfig && printf '%s\\n' {flannel_line} > /etc/sysconfig/flanneld \
                          && systemctl enable --now flanneld docker";
    let profile = |ids: &[&str], install: &str, upgrade: &str, deploy: &str| OsProfile {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        bootstrap: if install.is_empty() {
            flannel_docker.to_string()
        } else {
            format!("{install} && {flannel_docker}")
        },
        upgrade: upgrade.to_string(),
        restart: restart.clone(),
        deploy: deploy.to_string(),
    };
    BTreeMap::from([
        (
            "atomic".into(),
            profile(
                &["atomic"],
                "",
                "rpm-ostree upgrade",
                "rpm-ostree deploy {version}",
            ),
        ),
        (
            "fedora".into(),
            profile(
                &["fedora"],
                "dnf install -y flannel docker",
                "dnf update -y",
                "true",
            ),
        ),
        (
            "rhel".into(),
            profile(
                &["rhel", "redhat"],
                "yum install -y flannel docker",
                "yum update -y",
                "true",
            ),
        ),
        (
            "centos".into(),
            profile(
                &["centos"],
                "yum install -y flannel docker",
                "yum update -y",
                "true",
            ),
        ),
        (
            "debian".into(),
            profile(
                &["debian"],
                "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io flannel",
                "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade",
                "true",
            ),
        ),
        (
            "ubuntu".into(),
            profile(
                &["ubuntu"],
                "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io flannel",
                "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade",
                "true",
            ),
        ),
    ])
}

/// Settings of the host machinery.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// TCP port of hosts' SSH servers (22; tests run theirs elsewhere).
    pub ssh_port: u16,
    pub connect_timeout: Duration,
    pub bootstrap_timeout: Duration,
    pub step_timeout: Duration,
    pub restart_wait_timeout: Duration,
    pub watcher_interval: Duration,
    pub profiles: BTreeMap<String, OsProfile>,
    pub policy: AddressPolicy,
    pub trust_forwarded_for: bool,
    /// The etcd endpoint flannel uses on networks of type `flannel_etcd`.
    pub flannel_etcd_endpoint: Option<String>,
    /// The `simulated` host driver: no real host keeps step files or reboots, so rolling
    /// steps run their command directly and a restart does not wait for the host to go away.
    pub simulated: bool,
    /// Where container manager certificate files live (server setting `cert_dir`).
    pub cert_dir: Option<std::path::PathBuf>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            ssh_port: 22,
            connect_timeout: Duration::from_secs(30),
            bootstrap_timeout: Duration::from_secs(1800),
            step_timeout: Duration::from_secs(3600),
            restart_wait_timeout: Duration::from_secs(200),
            watcher_interval: Duration::from_secs(60),
            profiles: builtin_profiles(),
            policy: AddressPolicy::default(),
            trust_forwarded_for: false,
            flannel_etcd_endpoint: None,
            simulated: false,
            cert_dir: None,
        }
    }
}

impl HostSettings {
    /// The profile serving an `/etc/os-release` `ID` (or `atomic`).
    pub fn profile_for(&self, os: &str) -> Option<(&str, &OsProfile)> {
        self.profiles
            .iter()
            .find(|(name, p)| name.as_str() == os || p.ids.iter().any(|i| i == os))
            .map(|(n, p)| (n.as_str(), p))
    }
}

/// What the host jobs need, shared by core and the job handlers.
pub struct HostOps {
    pub store: Store,
    pub secrets: Arc<SecretBox>,
    pub transport: Arc<dyn HostTransport>,
    /// The Kubernetes node API client of `openshift` container managers.
    pub kube: Arc<dyn ContainerManagerClient>,
    pub settings: HostSettings,
}

/// Rows per batch of [`Commissaire::stream_hosts`]: about 50 KiB of JSON.
const HOST_STREAM_BATCH: usize = 256;

pub(crate) fn host_view(r: &HostRow) -> Host {
    Host {
        address: r.address.to_string(),
        status: r.status.clone(),
        os: r.os.clone(),
        cpus: r.cpus,
        memory: r.memory,
        space: r.space,
        last_check: r.last_check.map(commissaire_time).unwrap_or_default(),
        source: r.source.clone(),
    }
}

fn not_found(address: &str) -> Error {
    Error::not_found(format!("Host '{address}' does not exist."))
}

fn key_context(tenant: &TenantId, address: &HostAddress) -> String {
    format!("host-key:{tenant}:{address}")
}

/// Validates the registration body's key: base64 of a PEM or OpenSSH RSA/ECDSA/Ed25519 key.
fn decode_key(b64: &str) -> Result<String, Error> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let raw = STANDARD
        .decode(&compact)
        .or_else(|_| STANDARD_NO_PAD.decode(compact.trim_end_matches('=')))
        .map_err(|_| Error::bad_request("\"ssh_priv_key\" must be base64 of a private key."))?;
    if raw.len() > 64 * 1024 {
        return Err(Error::bad_request("\"ssh_priv_key\" is larger than 64 KiB."));
    }
    let text = String::from_utf8(raw)
        .map_err(|_| Error::bad_request("\"ssh_priv_key\" is not a PEM or OpenSSH key."))?;
    corral_drivers::parse_private_key(&text)
        .map_err(|e| Error::bad_request(format!("\"ssh_priv_key\": {e}")))?;
    Ok(text)
}

fn valid_remote_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn valid_fingerprint(fp: &str) -> bool {
    fp.strip_prefix("SHA256:").is_some_and(|b| {
        !b.is_empty()
            && STANDARD_NO_PAD
                .decode(b.trim_end_matches('='))
                .is_ok_and(|d| d.len() == 32)
    })
}

/// Where a self-registering host's address comes from (5.3).
pub struct PeerInfo {
    pub peer: Option<IpAddr>,
    pub forwarded_for: Option<String>,
}

/// The job's input.
#[derive(Debug, Serialize, Deserialize)]
struct InvestigatePayload {
    address: HostAddress,
}

impl Commissaire {
    pub(crate) fn host_ops(&self) -> Result<&Arc<HostOps>, Error> {
        self.hosts
            .as_ref()
            .ok_or_else(|| Error::Unavailable("Host management is not configured.".into()))
    }

    pub async fn list_hosts(&self, ctx: &OpCtx) -> Result<Vec<Host>, Error> {
        let scope = ctx.require(Access::Read)?;
        Ok(self
            .store
            .list_hosts(&scope)
            .await?
            .iter()
            .map(host_view)
            .collect())
    }

    /// [`Commissaire::list_hosts`] as a stream of batches read from one database cursor (the
    /// permission check is done before the first row): `GET /api/v0/hosts` writes each batch
    /// as it comes, so a list of any length never sits in memory.
    pub fn stream_hosts(
        &self,
        ctx: &OpCtx,
    ) -> Result<impl futures_util::Stream<Item = Result<Vec<Host>, Error>> + Send + use<>, Error> {
        use futures_util::StreamExt;
        let scope = ctx.require(Access::Read)?;
        Ok(self
            .store
            .stream_hosts(&scope, HOST_STREAM_BATCH)
            .map(|batch| batch.map(|rows| rows.iter().map(host_view).collect())))
    }

    /// A host named in a path: validated and canonicalised here, typed from then on.
    async fn host_row(&self, scope: &TenantScope, address: &str) -> Result<HostRow, Error> {
        let canonical = canonical_address(address).map_err(|_| not_found(address))?;
        self.store
            .get_host(scope, &canonical)
            .await?
            .ok_or_else(|| not_found(canonical.as_str()))
    }

    pub async fn get_host(&self, ctx: &OpCtx, address: &str) -> Result<Host, Error> {
        let scope = ctx.require(Access::Read)?;
        Ok(host_view(&self.host_row(&scope, address).await?))
    }

    /// `PUT /api/v0/host[/{address}]`: registers a host (`true`: created, 201) or answers
    /// the identical existing one (`false`: 200).
    pub async fn put_host(
        &self,
        ctx: &OpCtx,
        path_address: Option<&str>,
        body: HostPut,
        peer: PeerInfo,
    ) -> Result<(bool, Host), Error> {
        let scope = ctx.require(Access::Write)?;
        let ops = self.host_ops()?;
        let address = match (path_address, body.address.as_deref()) {
            (Some(p), body_addr) => {
                let p = canonical_address(p)?;
                if let Some(b) = body_addr
                    && canonical_address(b)? != p
                {
                    return Err(Error::bad_request(
                        "\"address\" in the body does not match the address in the url.",
                    ));
                }
                p
            }
            (None, Some(b)) => canonical_address(b)?,
            (None, None) => {
                let forwarded = peer
                    .forwarded_for
                    .filter(|_| ops.settings.trust_forwarded_for)
                    .and_then(|f| f.split(',').next().map(|s| s.trim().to_string()));
                match (forwarded, peer.peer) {
                    (Some(f), _) => canonical_address(&f)?,
                    (None, Some(ip)) => canonical_address(&ip.to_string())?,
                    (None, None) => {
                        return Err(Error::bad_request(
                            "\"address\" must be given in the url or in the PUT body",
                        ));
                    }
                }
            }
        };
        if !ops.settings.policy.allows(&address) {
            return Err(ops.settings.policy.refusal(&address));
        }
        let key_b64 = body
            .ssh_priv_key
            .as_deref()
            .ok_or_else(|| Error::bad_request("\"ssh_priv_key\" must be given."))?;
        let key_text = decode_key(key_b64)?;
        let remote_user = body.remote_user.clone().unwrap_or_else(|| "root".into());
        if !valid_remote_user(&remote_user) {
            return Err(Error::bad_request(format!(
                "Invalid remote_user '{remote_user}'."
            )));
        }
        let source = body.source.clone().unwrap_or_default();
        if source.chars().count() > 255 {
            return Err(Error::bad_request("\"source\" is longer than 255 characters."));
        }
        if let Some(fp) = &body.ssh_host_key_fingerprint
            && !valid_fingerprint(fp)
        {
            return Err(Error::bad_request(
                "\"ssh_host_key_fingerprint\" must be a SHA256 fingerprint as ssh-keygen -l prints it (SHA256:...).",
            ));
        }
        let cluster = match &body.cluster {
            Some(c) if !corral_types::ids::is_valid_name(c) => {
                return Err(corral_types::ids::invalid_name(c));
            }
            Some(c) => Some(ClusterName::from_trusted(c.clone())),
            None => None,
        };
        let tenant = &scope;
        // Compared on the key itself, so the same key sent with other line wrapping or padding
        // is the same registration.
        let digest = secrets::hash(key_text.trim());
        let host = NewHost {
            address: address.clone(),
            source,
            remote_user,
            ssh_key_sealed: ops
                .secrets
                .seal(&key_context(tenant.id(), &address), key_b64.trim().as_bytes())?,
            ssh_key_digest: digest.clone(),
            host_key_fingerprint: body.ssh_host_key_fingerprint.clone(),
            create_time: now_ms(),
        };
        let job = new_job(
            ctx,
            tenant,
            INVESTIGATE,
            address.as_str(),
            &InvestigatePayload {
                address: address.clone(),
            },
            true,
            ops.settings.bootstrap_timeout,
        )?;
        match self
            .store
            .create_host(tenant, &host, cluster.as_ref(), &job)
            .await?
        {
            CreateHostOutcome::Created(row) => {
                tracing::info!(request_id = %ctx.request_id(), host = %address, "host registered; investigation queued");
                self.wake_jobs();
                Ok((true, host_view(&row)))
            }
            CreateHostOutcome::Exists(row) => {
                if !secrets::same_hash(&row.ssh_key_digest, &digest) {
                    return Err(Error::conflict("Host already exists"));
                }
                if let Some(c) = &cluster
                    && row.cluster.as_ref() != Some(c)
                {
                    return Err(Error::conflict("Host not in cluster"));
                }
                Ok((false, host_view(&row)))
            }
            CreateHostOutcome::QuotaExceeded(max) => Err(Error::conflict(format!(
                "Tenant quota exceeded: maxNodes is {max}."
            ))),
            CreateHostOutcome::ClusterMissing => Err(Error::conflict("Cluster does not exist")),
            CreateHostOutcome::ClusterBusy(op) => Err(Error::conflict(format!(
                "Cluster '{}' has {} {op} in process.",
                body.cluster.unwrap_or_default(),
                article(op)
            ))),
        }
    }

    pub async fn delete_host(&self, ctx: &OpCtx, address: &str) -> Result<(), Error> {
        let scope = ctx.require(Access::Write)?;
        let row = self.host_row(&scope, address).await?;
        match self.store.delete_host(&scope, &row.address, now_ms()).await? {
            DeleteHostOutcome::Deleted(cluster, registered) => {
                if let (Some(c), true) = (cluster, registered) {
                    let manager = self.manager_of(&scope, &c).await?;
                    self.deregister_node(&scope, &manager, &row.address).await;
                }
                tracing::info!(request_id = %ctx.request_id(), host = %row.address, "host deleted");
                Ok(())
            }
            DeleteHostOutcome::NotFound => Err(not_found(row.address.as_str())),
            DeleteHostOutcome::ClusterBusy(op) => Err(Error::conflict(format!(
                "Cluster '{}' has {} {op} in process.",
                row.cluster.as_ref().map(ClusterName::as_str).unwrap_or_default(),
                article(op)
            ))),
        }
    }

    /// Admins only: the registered key, decrypted.
    pub async fn host_creds(&self, ctx: &OpCtx, address: &str) -> Result<HostCreds, Error> {
        let scope = ctx.require(Access::Admin)?;
        let ops = self.host_ops()?;
        let row = self.host_row(&scope, address).await?;
        let key = ops
            .secrets
            .open(&key_context(scope.id(), &row.address), &row.ssh_key_sealed)?;
        tracing::info!(request_id = %ctx.request_id(), host = %row.address, user = %ctx.principal().user, "host credentials read");
        Ok(HostCreds {
            address: row.address.into_string(),
            ssh_priv_key: String::from_utf8(key).map_err(Error::internal)?,
            remote_user: row.remote_user,
        })
    }

    pub async fn host_status(&self, ctx: &OpCtx, address: &str) -> Result<HostStatus, Error> {
        let scope = ctx.require(Access::Read)?;
        let row = self.host_row(&scope, address).await?;
        let container_manager = match (&row.cluster, row.registered, &self.hosts) {
            (Some(c), true, Some(ops)) => {
                let manager = self.manager_of(&scope, c).await?;
                ops.node_status(&scope, &manager, &row.address).await
            }
            _ => NodeStatus::none(),
        };
        Ok(HostStatus {
            kind: "host_only".into(),
            host: HostStatusHost {
                last_check: row.last_check.map(commissaire_time).unwrap_or_default(),
                status: row.status.clone(),
                message: row.message.clone(),
            },
            container_manager,
        })
    }

    /// The container manager name of a cluster (`""`: none, or no such cluster).
    pub(crate) async fn manager_of(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
    ) -> Result<String, Error> {
        Ok(self
            .store
            .get_cluster(tenant, cluster)
            .await?
            .map(|c| c.container_manager)
            .unwrap_or_default())
    }

    /// Removes a node from the container manager `manager`; failures are logged, not fatal
    /// (spec 6.3).
    pub(crate) async fn deregister_node(&self, tenant: &TenantScope, manager: &str, address: &HostAddress) {
        if let Some(ops) = &self.hosts {
            ops.leave_container_manager(tenant, manager, address).await;
        }
    }
}

/// "an upgrade", "a deploy", "a restart".
pub(crate) fn article(op: OperationKind) -> &'static str {
    if op.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl HostOps {
    /// The SSH target of a host, with its pinned key policy.
    pub(crate) fn target(&self, tenant: &TenantScope, row: &HostRow) -> Result<SshTarget, Error> {
        let b64 = self
            .secrets
            .open(&key_context(tenant.id(), &row.address), &row.ssh_key_sealed)?;
        let text = STANDARD
            .decode(String::from_utf8_lossy(&b64).trim())
            .map_err(|_| Error::internal("stored host key is not base64"))?;
        Ok(SshTarget {
            host: row.address.to_string(),
            port: self.settings.ssh_port,
            user: row.remote_user.clone(),
            private_key: String::from_utf8(text).map_err(Error::internal)?,
            host_key: match &row.host_key_fingerprint {
                Some(fp) => HostKeyPolicy::Expect(fp.clone()),
                None => HostKeyPolicy::TrustOnFirstUse,
            },
            connect_timeout: self.settings.connect_timeout,
        })
    }

    /// Runs a command as root (through `sudo -n` for other users); a non-zero exit is an error
    /// whose message carries the end of the output.
    pub(crate) async fn run(
        &self,
        tenant: &TenantScope,
        row: &HostRow,
        command: &str,
        timeout: Duration,
    ) -> Result<String, HostError> {
        let target = self
            .target(tenant, row)
            .map_err(|e| HostError::Command(e.external_message()))?;
        let command = if row.remote_user == "root" {
            command.to_string()
        } else {
            format!("sudo -n sh -c {}", shell_quote(command))
        };
        let out = self.transport.exec(&target, &command, timeout).await?;
        if matches!(target.host_key, HostKeyPolicy::TrustOnFirstUse) {
            let _ = self
                .store
                .pin_host_key(tenant, &row.address, &out.host_key_fingerprint)
                .await;
        }
        if out.exit_status != 0 {
            let mut tail = out.stderr_text();
            if tail.trim().is_empty() {
                tail = out.stdout_text();
            }
            let tail: String = tail
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(HostError::Command(format!(
                "command exited with status {}: {tail}",
                out.exit_status
            )));
        }
        Ok(out.stdout_text())
    }
}

impl HostOps {
    /// The profile's bootstrap with `{flannel_line}` filled in for the host's network.
    async fn bootstrap_command(
        &self,
        tenant: &TenantScope,
        host: &HostRow,
        template: &str,
    ) -> Result<String, Error> {
        if !template.contains("{flannel_line}") {
            return Ok(template.to_string());
        }
        let network = match &host.cluster {
            Some(c) => self.store.get_cluster(tenant, c).await?.map(|c| c.network),
            None => None,
        }
        .unwrap_or_else(|| "default".into());
        let row = self
            .store
            .named::<corral_store::NetworkRow>()
            .get(tenant, &network)
            .await?;
        let line = match row {
            Some(n) if n.kind == "flannel_server" => {
                let options: serde_json::Value = serde_json::from_str(&n.options).map_err(Error::internal)?;
                let address = options["address"].as_str().unwrap_or_default().to_string();
                format!("FLANNEL_OPTIONS=\"-remote={address}\"")
            }
            _ => format!(
                "FLANNEL_ETCD_ENDPOINTS=\"{}\"",
                self.settings.flannel_etcd_endpoint.clone().unwrap_or_default()
            ),
        };
        Ok(template.replace("{flannel_line}", &shell_quote(&line)))
    }

    /// Registers a bootstrapped member with its cluster's container manager (6.3): the
    /// status, message and `registered` flag it ends with.
    pub(crate) async fn join_container_manager(
        &self,
        tenant: &TenantScope,
        cluster: &ClusterName,
        address: &HostAddress,
    ) -> Result<(&'static str, String, bool), Error> {
        let Some(c) = self.store.get_cluster(tenant, cluster).await? else {
            return Ok(("disassociated", String::new(), false));
        };
        if c.container_manager.is_empty() {
            return Ok(("active", String::new(), false));
        }
        match self.kube_target(tenant, &c.container_manager).await {
            Ok(None) => Ok(("active", String::new(), true)),
            Ok(Some(target)) => match self.kube.register_node(&target, address.as_str()).await {
                Ok(()) => Ok(("active", String::new(), true)),
                Err(e) => Ok(("disassociated", e.to_string(), false)),
            },
            Err(e) => Ok(("disassociated", e.external_message(), false)),
        }
    }

    /// Removes a node from a container manager; a failure is logged and ignored (6.3).
    pub(crate) async fn leave_container_manager(
        &self,
        tenant: &TenantScope,
        manager: &str,
        address: &HostAddress,
    ) {
        if manager.is_empty() {
            return;
        }
        match self.kube_target(tenant, manager).await {
            Ok(None) => {}
            Ok(Some(target)) => {
                if let Err(e) = self.kube.remove_node(&target, address.as_str()).await {
                    tracing::warn!(%address, %manager, error = %e, "could not remove the node from its container manager");
                }
            }
            Err(e) => tracing::warn!(%address, %manager, error = %e, "container manager unusable"),
        }
    }

    /// The node status a container manager reports (`{}` when there is none to ask).
    pub(crate) async fn node_status(
        &self,
        tenant: &TenantScope,
        manager: &str,
        address: &HostAddress,
    ) -> NodeStatus {
        match self.kube_target(tenant, manager).await {
            Ok(Some(target)) => match self.kube.node_status(&target, address.as_str()).await {
                Ok(status) => NodeStatus(status),
                Err(e) => {
                    tracing::debug!(%address, %manager, error = %e, "node status unavailable");
                    NodeStatus::none()
                }
            },
            _ => NodeStatus::none(),
        }
    }

    /// The API target of an `openshift` manager; `None` for `trivial` (nothing to call).
    async fn kube_target(&self, tenant: &TenantScope, manager: &str) -> Result<Option<KubeTarget>, Error> {
        let Some(cm) = crate::networks::container_manager_config(
            &self.store,
            &self.secrets,
            self.settings.cert_dir.as_deref(),
            tenant,
            manager,
        )
        .await?
        else {
            return Err(Error::conflict(format!(
                "Container manager '{manager}' does not exist."
            )));
        };
        if matches!(cm.kind, crate::networks::ContainerManagerKind::Trivial) {
            return Ok(None);
        }
        let read = |path: Option<std::path::PathBuf>| async move {
            match path {
                None => Ok(None),
                Some(p) => tokio::fs::read(&p).await.map(Some).map_err(|e| {
                    Error::conflict(format!(
                        "Cannot read the certificate file '{}': {e}.",
                        p.display()
                    ))
                }),
            }
        };
        Ok(Some(KubeTarget {
            apiserver: cm.apiserver.clone().unwrap_or_default(),
            token: cm.token.clone(),
            client_cert_pem: read(cm.certificate_path.clone()).await?,
            client_key_pem: read(cm.certificate_key_path.clone()).await?,
            ca_pem: read(cm.ca_path.clone()).await?,
            timeout: self.settings.connect_timeout,
        }))
    }
}

/// Investigation and bootstrap of one host (6.1).
pub struct InvestigateHandler(pub Arc<HostOps>);

#[derive(Debug, Serialize, Deserialize)]
struct FactsStep {
    os: String,
}

#[async_trait::async_trait]
impl JobHandler for InvestigateHandler {
    async fn run(&self, ctx: &mut JobCtx) -> Result<(), JobError> {
        let ops = self.0.clone();
        let tenant = ctx.scope();
        let p: InvestigatePayload = ctx.payload()?;
        let row = || async {
            ops.store
                .get_host(&tenant, &p.address)
                .await?
                .ok_or_else(|| JobError::Failed("the host was deleted".into()))
        };
        let host = row().await?;
        let facts = ctx
            .step("facts", || async {
                let out = ops
                    .run(&tenant, &host, &facts_command(), ops.settings.connect_timeout)
                    .await
                    .map_err(fail)?;
                let facts = parse_facts(&out)
                    .map_err(|e| JobError::Failed(format!("Cannot read the host's facts: {e}")))?;
                let os = if facts.ostree {
                    "atomic".to_string()
                } else {
                    facts.os_id.clone()
                };
                let Some((profile, _)) = ops.settings.profile_for(&os) else {
                    return Err(JobError::Failed(format!(
                        "Unsupported operating system '{}'.",
                        facts.os_id
                    )));
                };
                let ipv4 = if host.address.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
                    host.address.to_string()
                } else {
                    String::new()
                };
                let recorded = HostFacts {
                    os: profile.to_string(),
                    cpus: facts.cpus,
                    memory: facts.memory_kb,
                    space: facts.space_kb,
                    hostname: facts.hostname.clone(),
                    ipv4,
                };
                ops.store
                    .record_facts(&tenant, &host.address, &recorded, now_ms())
                    .await?;
                Ok(FactsStep {
                    os: profile.to_string(),
                })
            })
            .await?;
        let host = row().await?;
        ctx.step("bootstrap", || async {
            let profile =
                ops.settings.profiles.get(&facts.os).ok_or_else(|| {
                    JobError::Failed(format!("Unsupported operating system '{}'.", facts.os))
                })?;
            ops.run(
                &tenant,
                &host,
                &ops.bootstrap_command(&tenant, &host, &profile.bootstrap).await?,
                ops.settings.bootstrap_timeout,
            )
            .await
            .map_err(fail)?;
            Ok(())
        })
        .await?;
        let host = row().await?;
        // A member of a cluster joins its container manager; otherwise it waits, disassociated.
        let (status, message, registered) = match &host.cluster {
            None => ("disassociated", String::new(), false),
            Some(c) => ops.join_container_manager(&tenant, c, &host.address).await?,
        };
        let state = HostState {
            bootstrapped: Some(true),
            registered: Some(registered),
            last_check: Some(now_ms()),
            ..HostState::new(status, &message)
        };
        ops.store.set_host_state(&tenant, &host.address, &state).await?;
        tracing::info!(host = %host.address, %status, "host bootstrapped");
        Ok(())
    }

    async fn failed(&self, job: &JobRow, reason: &str) -> Result<(), Error> {
        let ops = &self.0;
        // The job's subject is the address it was queued with (see `put_host`).
        let address = HostAddress::from_trusted(job.subject.as_str());
        if ops
            .store
            .get_host(&TenantScope::background(job.tenant_id.clone()), &address)
            .await?
            .is_some()
        {
            let state = HostState {
                last_check: Some(now_ms()),
                ..HostState::new("failed", reason)
            };
            ops.store
                .set_host_state(&TenantScope::background(job.tenant_id.clone()), &address, &state)
                .await?;
        }
        Ok(())
    }
}

/// Maps a failure on a host to a job failure: a changed host key, a refused login or a failed
/// command need an operator; the host's message says why.
fn fail(e: HostError) -> JobError {
    JobError::Failed(e.to_string())
}

/// Why running a command on a host failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Reaching or logging in to the host failed.
    Ssh(SshError),
    /// The host answered, the command failed (or could not be prepared).
    Command(String),
}

impl HostError {
    /// The host could not be reached (a restart or an outage): worth polling again.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HostError::Ssh(e) if e.is_unreachable())
    }
}

impl From<SshError> for HostError {
    fn from(e: SshError) -> Self {
        HostError::Ssh(e)
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Ssh(e) => e.fmt(f),
            HostError::Command(m) => f.write_str(m),
        }
    }
}
