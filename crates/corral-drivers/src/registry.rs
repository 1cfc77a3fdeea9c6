//! [`CloudRegistry`]: which cloud `type` has a driver, and how that driver is built from its own
//! options. The server builds every configured cloud through it, so a new cloud driver is one
//! constructor registered here (and nothing to change in core or the binary).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::cloud::{CloudDriver, CloudError, MockCloud, MockOptions};
use crate::qemu::{QemuCloud, QemuCloudOptions};

/// Server-wide settings a driver falls back to when a cloud's options leave them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverDefaults {
    /// How long each `mock` operation takes unless the cloud sets `delay_ms` (the server's
    /// `mock_delay`).
    pub mock_delay: Duration,
}

/// Builds one cloud's driver from the driver's own options (the cloud's `options` table without
/// the keys core reads). It refuses keys it does not know; its error need not name the cloud,
/// [`CloudRegistry::build`] does.
pub type CloudConstructor = fn(&Value, &DriverDefaults) -> Result<Arc<dyn CloudDriver>, BuildError>;

/// Why a constructor made no driver: its options are wrong (a typo: the start is refused), or
/// what the driver needs is missing now (a program, a directory: the cloud is unavailable and
/// retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    Options(CloudError),
    Unavailable(CloudError),
}

impl From<CloudError> for BuildError {
    fn from(e: CloudError) -> Self {
        BuildError::Options(e)
    }
}

/// Why a configured cloud has no driver. The text names the cloud: it refuses the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudConfigError {
    #[error("cloud '{cloud}': no driver for cloud type '{kind}' (types with a driver: {})", known.join(", "))]
    UnknownType {
        cloud: String,
        kind: String,
        /// The registered types, sorted.
        known: Vec<String>,
    },
    /// The driver refused its options.
    #[error("cloud '{cloud}': {message}")]
    Driver { cloud: String, message: String },
    /// The options are good but the driver cannot work now (a missing program or directory):
    /// the server starts with the cloud unavailable and retries it.
    #[error("cloud '{cloud}': {message}")]
    Unavailable { cloud: String, message: String },
}

/// Cloud type → driver constructor.
#[derive(Debug, Clone)]
pub struct CloudRegistry {
    defaults: DriverDefaults,
    constructors: BTreeMap<String, CloudConstructor>,
}

impl CloudRegistry {
    /// A registry without any type.
    pub fn new(defaults: DriverDefaults) -> CloudRegistry {
        CloudRegistry {
            defaults,
            constructors: BTreeMap::new(),
        }
    }

    /// The drivers this crate ships: `mock` and `qemu`.
    pub fn builtin(defaults: DriverDefaults) -> CloudRegistry {
        let mut r = CloudRegistry::new(defaults);
        r.register("mock", build_mock);
        r.register("qemu", build_qemu);
        r
    }

    /// Registers (or replaces) the constructor of a cloud type.
    pub fn register(&mut self, kind: &str, constructor: CloudConstructor) {
        self.constructors.insert(kind.to_string(), constructor);
    }

    /// The types with a driver, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// The driver of cloud `cloud` (its id, for the error) of type `kind`, from the driver's own
    /// options.
    pub fn build(
        &self,
        cloud: &str,
        kind: &str,
        options: &Value,
    ) -> Result<Arc<dyn CloudDriver>, CloudConfigError> {
        let constructor = self
            .constructors
            .get(kind)
            .ok_or_else(|| CloudConfigError::UnknownType {
                cloud: cloud.to_string(),
                kind: kind.to_string(),
                known: self.types().map(str::to_string).collect(),
            })?;
        let driver = constructor(options, &self.defaults).map_err(|e| match e {
            BuildError::Options(e) => CloudConfigError::Driver {
                cloud: cloud.to_string(),
                message: e.0,
            },
            BuildError::Unavailable(e) => CloudConfigError::Unavailable {
                cloud: cloud.to_string(),
                message: e.0,
            },
        })?;
        driver.check().map_err(|e| CloudConfigError::Unavailable {
            cloud: cloud.to_string(),
            message: e.0,
        })?;
        Ok(driver)
    }
}

fn build_mock(options: &Value, defaults: &DriverDefaults) -> Result<Arc<dyn CloudDriver>, BuildError> {
    Ok(Arc::new(MockCloud::new(MockOptions::from_options(
        options,
        defaults.mock_delay,
    )?)))
}

fn build_qemu(options: &Value, _defaults: &DriverDefaults) -> Result<Arc<dyn CloudDriver>, BuildError> {
    let options = QemuCloudOptions::from_options(options)?;
    Ok(Arc::new(
        QemuCloud::new(options).map_err(BuildError::Unavailable)?,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cloud::Operation;

    fn registry() -> CloudRegistry {
        CloudRegistry::builtin(DriverDefaults {
            mock_delay: Duration::from_millis(5),
        })
    }

    fn error(kind: &str, options: Value) -> String {
        match registry().build("east-1", kind, &options) {
            Ok(_) => panic!("{kind} {options} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn builtin_types() {
        assert_eq!(registry().types().collect::<Vec<_>>(), ["mock", "qemu"]);
    }

    #[test]
    fn an_unknown_type_names_the_cloud_and_the_known_types() {
        assert_eq!(
            error("openstack", json!({})),
            "cloud 'east-1': no driver for cloud type 'openstack' (types with a driver: mock, qemu)"
        );
        let e = CloudRegistry::new(DriverDefaults::default())
            .build("x", "mock", &json!({}))
            .err();
        assert_eq!(
            e,
            Some(CloudConfigError::UnknownType {
                cloud: "x".into(),
                kind: "mock".into(),
                known: vec![],
            })
        );
    }

    #[test]
    fn bad_options_name_the_cloud() {
        assert_eq!(
            error("mock", json!({"fail": ["rebootInstance", "explode"]})),
            "cloud 'east-1': options.fail: unknown operation type 'explode'"
        );
        assert_eq!(
            error(
                "qemu",
                json!({"image_dir": "/i", "state_dir": "/s", "accel": "host"})
            )
            .split_once(": ")
            .map(|(cloud, _)| cloud.to_string()),
            Some("cloud 'east-1'".into())
        );
        assert_eq!(
            error("qemu", json!({"state_dir": "/s"})),
            "cloud 'east-1': The qemu cloud needs the option 'image_dir'."
        );
    }

    #[test]
    fn an_unknown_option_key_names_the_cloud_and_the_key() {
        assert_eq!(
            error("mock", json!({"delay_ms": 1, "fial": []})),
            "cloud 'east-1': options.fial: unknown option (neither one every cloud has nor one of \
             the mock driver's: delay_ms, fail, hang, images)"
        );
        // Another driver's option is unknown too.
        let e = error(
            "qemu",
            json!({"image_dir": "/i", "state_dir": "/s", "delay_ms": 1}),
        );
        assert!(
            e.starts_with("cloud 'east-1': options.delay_ms: unknown option"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_mock_is_built_from_its_options_and_the_defaults() {
        let r = registry();
        let m = r
            .build("m", "mock", &json!({"images": ["debian"], "fail": ["addImage"]}))
            .unwrap();
        assert_eq!(m.cloud_type(), "mock");
        let images = m.images().await.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].real_id, "mock-image-debian");
        assert!(m.operations().contains(&Operation::AddImage));
        // The injected failure.
        assert!(m.delete_image("x").await.is_ok());
        let e = m.snapshot(&vm(), "i", "n").await.unwrap_err();
        assert_eq!(e.0, "addImage: injected failure");

        // The default delay applies without `delay_ms`, and `delay_ms` wins over it.
        let slow = CloudRegistry::builtin(DriverDefaults {
            mock_delay: Duration::from_secs(3600),
        });
        let quick = slow.build("m", "mock", &json!({"delay_ms": 0})).unwrap();
        assert!(quick.launch(&vm()).await.is_ok());
        let waits = slow.build("m", "mock", &json!({})).unwrap();
        let launch = tokio::time::timeout(Duration::from_millis(50), waits.launch(&vm())).await;
        assert!(launch.is_err(), "the server's mock_delay was not used");
    }

    #[test]
    fn a_qemu_cloud_is_built_from_its_options() {
        let dir = tempfile::Builder::new().prefix("cr").tempdir_in("/tmp").unwrap();
        let state = dir.path().join("s");
        let q = registry()
            .build(
                "local",
                "qemu",
                // Any executable stands in for QEMU: building the driver only resolves them.
                &json!({
                    "image_dir": dir.path(), "state_dir": state, "accel": "tcg",
                    "qemu_binary": "/bin/sh", "qemu_img": "/bin/sh",
                }),
            )
            .unwrap();
        assert_eq!(q.cloud_type(), "qemu");
        assert!(state.join("images").is_dir());
    }

    #[test]
    fn a_missing_program_or_image_dir_makes_the_cloud_unavailable_not_a_typo() {
        let dir = tempfile::Builder::new().prefix("cr").tempdir_in("/tmp").unwrap();
        let build = |binary: &str, image_dir: &std::path::Path| {
            registry()
                .build(
                    "local",
                    "qemu",
                    &json!({
                        "image_dir": image_dir, "state_dir": dir.path().join("s"), "accel": "tcg",
                        "qemu_binary": binary, "qemu_img": "/bin/sh",
                    }),
                )
                .err()
        };
        let missing = dir.path().join("no-qemu");
        match build(missing.to_str().unwrap(), dir.path()) {
            Some(CloudConfigError::Unavailable { cloud, message }) => {
                assert_eq!(cloud, "local");
                assert!(message.contains("no-qemu"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let images = dir.path().join("images-not-yet");
        match build("/bin/sh", &images) {
            Some(CloudConfigError::Unavailable { message, .. }) => {
                assert!(message.contains("images-not-yet"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::create_dir(&images).unwrap();
        assert_eq!(build("/bin/sh", &images), None);
    }

    fn vm() -> crate::cloud::VmRequest {
        crate::cloud::VmRequest {
            id: "a".into(),
            name: "a".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            image_real_id: "mock-image-debian".into(),
        }
    }
}
