//! The `qemu` cloud (`QemuCloud`) through the `CloudDriver` trait only, with real QEMU and the
//! real test guest: every action is checked against what the guest prints on its console or
//! serves on the reported address, and (for vCPUs and memory) against what QEMU reports.
//!
//! The guest, the accelerator and the deadlines: see `tests/common/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use common::{BOOT, Fixture, field, http_get, last_image, up_lines};
use corral_drivers::qemu::{Hypervisor, QemuCloud, QemuCloudOptions};
use corral_drivers::{CloudDriver, Observed, Operation, VmAction, VmReport, VmRequest};

impl Fixture {
    /// Short, for the QMP sockets: `/tmp/cqXXXXXX/s`.
    fn state_dir(&self) -> PathBuf {
        self.path().join("s")
    }

    fn cloud(&self) -> QemuCloud {
        let mut o = QemuCloudOptions::new(&self.guest, self.state_dir());
        o.accel = common::test_accel();
        o.shutdown_timeout = BOOT;
        QemuCloud::new(o).unwrap()
    }
}

fn request(id: &str, image_real_id: &str, vcpus: u32, ram_mb: u64) -> VmRequest {
    VmRequest {
        id: id.into(),
        name: format!("vm-{}", &id[..8]),
        vcpus,
        ram_mb,
        disk_gb: 1,
        image_real_id: image_real_id.into(),
    }
}

async fn console(cloud: &QemuCloud, id: &str) -> String {
    String::from_utf8_lossy(&cloud.console(id, 1 << 20).await.unwrap()).into_owned()
}

async fn wait_boots(cloud: &QemuCloud, id: &str, n: usize) -> String {
    common::wait_boots(|| console(cloud, id), id, n).await
}

/// The one loopback address a running VM reports.
fn address(report: &VmReport) -> SocketAddr {
    assert_eq!(report.addresses.len(), 1, "{report:?}");
    let a: SocketAddr = report.addresses[0].parse().unwrap();
    assert!(a.ip().is_loopback(), "{a}");
    a
}

/// What `observe` says about one VM.
async fn observed(cloud: &QemuCloud, id: &str) -> (Observed, VmReport) {
    let mut all = cloud.observe(&[id.to_string()]).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let (got, state, report) = all.remove(0);
    assert_eq!(got, id);
    (state, report)
}

fn is_md5(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_through_every_action_of_the_cloud() {
    let fx = Fixture::new();
    let cloud = fx.cloud();
    let t0 = Instant::now();
    let id = "c10dc10d-1111-4c1e-9a55-000000000001";

    assert_eq!(cloud.cloud_type(), "qemu");
    let ops = cloud.operations();
    assert_eq!(ops.len(), Operation::ALL.len() - 3);
    for op in [
        Operation::MigrateInstance,
        Operation::AddAddress,
        Operation::DeleteAddress,
    ] {
        assert!(!ops.contains(&op));
    }

    // Base images: the disks of the image directory, not the kernel or initrd.
    let images = cloud.images().await.unwrap();
    let ids: Vec<_> = images.iter().map(|i| i.real_id.as_str()).collect();
    assert_eq!(ids, ["base:debian-tiny-b.qcow2", "base:debian-tiny.qcow2"]);
    assert!(
        images.iter().all(|i| is_md5(&i.checksum) && i.size_bytes > 0),
        "{images:?}"
    );
    assert_ne!(images[0].checksum, images[1].checksum);
    assert!(cloud.launch(&request(id, "base:vmlinuz", 1, 256)).await.is_err());
    assert!(cloud.launch(&request(id, "/etc/passwd", 1, 256)).await.is_err());
    assert!(
        cloud
            .launch(&request(id, "base:nope.qcow2", 1, 256))
            .await
            .is_err()
    );

    // launch: running, and the address serves the image's name
    let vm = request(id, "base:debian-tiny.qcow2", 1, 256);
    let report = cloud.launch(&vm).await.unwrap();
    assert_eq!(report.real_id, id);
    let addr = address(&report);
    let up = wait_boots(&cloud, id, 1).await;
    eprintln!("first boot after {:?}", t0.elapsed());
    assert_eq!(field(&up, "boot"), "1");
    let page = http_get(addr).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");
    assert!(page.contains("hostname=vm-c10dc10d"), "{page}");
    assert_eq!(observed(&cloud, id).await, (Observed::Running, report.clone()));
    // A retried launch changes nothing.
    assert_eq!(cloud.launch(&vm).await.unwrap(), report);

    // pause / unpause
    assert_eq!(cloud.act(&vm, VmAction::Pause).await.unwrap(), report);
    assert_eq!(observed(&cloud, id).await.0, Observed::Paused);
    cloud.act(&vm, VmAction::Unpause).await.unwrap();
    assert_eq!(observed(&cloud, id).await.0, Observed::Running);

    // reboot (the guest's own) and hard reboot (a reset)
    cloud.act(&vm, VmAction::Reboot).await.unwrap();
    assert_eq!(field(&wait_boots(&cloud, id, 2).await, "boot"), "2");
    assert!(console(&cloud, id).await.contains("corral-guest: going down"));
    cloud.act(&vm, VmAction::HardReboot).await.unwrap();
    let up = wait_boots(&cloud, id, 3).await;
    assert_eq!(field(&up, "boot"), "3");

    // suspend: no process, no address; resume: the same boot goes on
    let boot_id = field(&up, "boot_id");
    let r = cloud.act(&vm, VmAction::Suspend).await.unwrap();
    assert!(r.addresses.is_empty(), "{r:?}");
    assert_eq!(observed(&cloud, id).await.0, Observed::Suspended);
    let r = cloud.act(&vm, VmAction::Resume).await.unwrap();
    assert_eq!(observed(&cloud, id).await.0, Observed::Running);
    let page = http_get(address(&r)).await;
    assert!(page.contains(&format!("boot_id={boot_id}")), "{page}");
    assert_eq!(up_lines(&console(&cloud, id).await).len(), 3);
    // Corral's resume from paused is an unpause.
    cloud.act(&vm, VmAction::Pause).await.unwrap();
    cloud.act(&vm, VmAction::Resume).await.unwrap();
    assert_eq!(observed(&cloud, id).await.0, Observed::Running);

    // resize: QEMU and the guest see the new shape
    let vm = request(id, "base:debian-tiny.qcow2", 2, 384);
    let r = cloud.act(&vm, VmAction::Resize).await.unwrap();
    address(&r);
    let info = cloud.hypervisor().inspect(id).await.unwrap();
    assert_eq!((info.vcpus, info.ram_mb), (Some(2), Some(384)));
    let up = wait_boots(&cloud, id, 4).await;
    assert_eq!(field(&up, "vcpus"), "2");

    // rebuild on image b: a fresh disk
    let vm = request(id, "base:debian-tiny-b.qcow2", 2, 384);
    let r = cloud.act(&vm, VmAction::Rebuild).await.unwrap();
    let up = wait_boots(&cloud, id, 5).await;
    assert_eq!(field(&up, "boot"), "1");
    assert_eq!(last_image(&console(&cloud, id).await), "debian-tiny-b");
    assert!(http_get(address(&r)).await.contains("image=debian-tiny-b\n"));

    // snapshot: a standalone private image, used by nothing yet
    let image_id = "5a9e5a9e-0000-4c1e-9a55-00000000000a";
    let snap = cloud.snapshot(&vm, image_id, "snap of b").await.unwrap();
    assert_eq!(snap.real_id, format!("private:{image_id}"));
    assert_eq!(snap.name, "snap of b");
    assert!(is_md5(&snap.checksum) && snap.size_bytes > 0, "{snap:?}");
    let file = cloud.image_path(&snap.real_id).unwrap();
    assert_eq!(
        file,
        fx.state_dir()
            .canonicalize()
            .unwrap()
            .join(format!("images/{image_id}.qcow2"))
    );
    assert_eq!(common::backing_of(&file), None);
    assert_eq!(observed(&cloud, id).await.0, Observed::Running);
    assert!(!cloud.image_in_use(&snap.real_id).await.unwrap());
    // A retried snapshot job answers the same image.
    assert_eq!(cloud.snapshot(&vm, image_id, "snap of b").await.unwrap(), snap);
    // Base images are in use by the first VM's disk... until its rebuild: b now.
    assert!(cloud.image_in_use("base:debian-tiny-b.qcow2").await.unwrap());
    assert!(!cloud.image_in_use("base:debian-tiny.qcow2").await.unwrap());

    // a second VM from the snapshot: the image is in use, and cannot be deleted meanwhile
    let id2 = "c10dc10d-2222-4c1e-9a55-000000000002";
    let vm2 = request(id2, &snap.real_id, 1, 256);
    let r2 = cloud.launch(&vm2).await.unwrap();
    assert!(cloud.image_in_use(&snap.real_id).await.unwrap());
    let e = cloud.delete_image(&snap.real_id).await.unwrap_err();
    assert!(e.0.contains("in use"), "{e}");
    assert!(file.is_file());
    let up2 = wait_boots(&cloud, id2, 1).await;
    assert_eq!(
        field(&up2, "boot"),
        "2",
        "the snapshot carries the disk's boot counter"
    );
    assert_eq!(last_image(&console(&cloud, id2).await), "debian-tiny-b");
    assert!(http_get(address(&r2)).await.contains("hostname=vm-c10dc10d"));
    let r = cloud.act(&vm2, VmAction::Delete).await.unwrap();
    assert!(r.addresses.is_empty());
    assert!(!cloud.image_in_use(&snap.real_id).await.unwrap());
    cloud.delete_image(&snap.real_id).await.unwrap();
    assert!(!file.exists());
    cloud.delete_image(&snap.real_id).await.unwrap();
    assert!(cloud.delete_image("base:debian-tiny.qcow2").await.is_err());
    assert!(fx.guest.join("debian-tiny.qcow2").is_file());

    // shutdown: clean, no address; start again
    let r = cloud.act(&vm, VmAction::Shutdown).await.unwrap();
    assert!(r.addresses.is_empty(), "{r:?}");
    assert!(console(&cloud, id).await.contains("corral-guest: power button"));
    assert_eq!(observed(&cloud, id).await, (Observed::Shutoff, r));
    let r = cloud.act(&vm, VmAction::Start).await.unwrap();
    let up = wait_boots(&cloud, id, 6).await;
    assert_eq!(field(&up, "boot"), "2");
    http_get(address(&r)).await;

    // rename: metadata, the address stays
    let renamed = VmRequest {
        name: "renamed".into(),
        ..vm.clone()
    };
    assert_eq!(cloud.act(&renamed, VmAction::Rename).await.unwrap(), r);
    assert_eq!(cloud.hypervisor().inspect(id).await.unwrap().name, "renamed");

    // delete: gone, and again is fine
    let pid = cloud.hypervisor().inspect(id).await.unwrap().pid.unwrap();
    cloud.act(&vm, VmAction::Delete).await.unwrap();
    common::wait_gone(pid).await;
    assert_eq!(observed(&cloud, id).await.0, Observed::Missing);
    cloud.act(&vm, VmAction::Delete).await.unwrap();
    assert!(cloud.act(&vm, VmAction::Start).await.is_err());
    eprintln!("cloud lifecycle done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_are_observed_again_after_a_restart() {
    let fx = Fixture::new();
    let running = "c10dc10d-3333-4c1e-9a55-000000000003";
    let paused = "c10dc10d-4444-4c1e-9a55-000000000004";
    let deleted = "c10dc10d-5555-4c1e-9a55-000000000005";
    let image = "base:debian-tiny.qcow2";
    let (report, pid) = {
        let cloud = fx.cloud();
        let report = cloud.launch(&request(running, image, 1, 192)).await.unwrap();
        cloud.launch(&request(paused, image, 1, 192)).await.unwrap();
        cloud
            .act(&request(paused, image, 1, 192), VmAction::Pause)
            .await
            .unwrap();
        cloud.launch(&request(deleted, image, 1, 192)).await.unwrap();
        cloud
            .act(&request(deleted, image, 1, 192), VmAction::Delete)
            .await
            .unwrap();
        wait_boots(&cloud, running, 1).await;
        let pid = cloud.hypervisor().inspect(running).await.unwrap().pid.unwrap();
        (report, pid)
        // the driver is dropped here, as by a restart of Corral
    };
    assert!(common::alive(pid));

    let cloud = fx.cloud();
    let ids: Vec<String> = [running, paused, deleted, "not an id"].map(String::from).into();
    let seen = cloud.observe(&ids).await.unwrap();
    let states: Vec<_> = seen.iter().map(|(id, s, _)| (id.as_str(), s.clone())).collect();
    assert_eq!(
        states,
        [
            (running, Observed::Running),
            (paused, Observed::Paused),
            (deleted, Observed::Missing),
            ("not an id", Observed::Missing),
        ]
    );
    assert_eq!(seen[0].2, report);
    assert!(seen[2].2.addresses.is_empty());
    let page = http_get(address(&report)).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");
    assert_eq!(cloud.hypervisor().inspect(running).await.unwrap().pid, Some(pid));

    // Still under control through the new driver.
    cloud
        .act(&request(paused, image, 1, 192), VmAction::Unpause)
        .await
        .unwrap();
    assert_eq!(up_lines(&console(&cloud, running).await).len(), 1);
    for id in [running, paused] {
        cloud
            .act(&request(id, image, 1, 192), VmAction::Delete)
            .await
            .unwrap();
    }
    common::wait_gone(pid).await;
    let seen = cloud
        .observe(&[running.to_string(), paused.to_string()])
        .await
        .unwrap();
    assert!(seen.iter().all(|(_, s, _)| *s == Observed::Missing), "{seen:?}");
}
