//! The QEMU driver against real QEMU and the real test guest (`scripts/guest-image.sh`): every
//! step is checked against what QEMU reports over QMP and what the guest prints on its serial
//! console or serves over HTTP.
//!
//! The guest, the accelerator and the deadlines: see `tests/common/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{BOOT, Fixture, alive, backing_of, field, http_get, last_image, up_lines, wait_gone};
use corral_drivers::qemu::{Hypervisor, QemuConfig, QemuHypervisor, Rebooted, Stopped, VmSpec, VmState};

impl Fixture {
    fn state_dir(&self) -> PathBuf {
        self.path().join("vms")
    }

    fn config(&self) -> QemuConfig {
        let mut c = QemuConfig::new(&self.guest, self.state_dir());
        c.accel = common::test_accel();
        c.shutdown_timeout = BOOT;
        c
    }

    fn driver(&self) -> QemuHypervisor {
        QemuHypervisor::new(self.config()).unwrap()
    }
}

fn spec(id: &str, image: &str, vcpus: u32, ram_mb: u64) -> VmSpec {
    VmSpec {
        id: id.into(),
        name: format!("vm-{}", &id[..8]),
        vcpus,
        ram_mb,
        image: PathBuf::from(image),
    }
}

async fn console(hv: &QemuHypervisor, id: &str) -> String {
    String::from_utf8_lossy(&hv.console(id, 1 << 20).await.unwrap()).into_owned()
}

/// Waits until the console shows `n` boots; answers the last `up` line.
async fn wait_boots(hv: &QemuHypervisor, id: &str, n: usize) -> String {
    common::wait_boots(|| console(hv, id), id, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vm_through_its_whole_lifecycle() {
    let fx = Fixture::new();
    let hv = fx.driver();
    let t0 = Instant::now();
    let id = "0b0e5c1e-1111-4c1e-9a55-000000000001";

    // Base images are listed with checksums.
    let images = hv.base_images().await.unwrap();
    let names: Vec<_> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["debian-tiny-b.qcow2", "debian-tiny.qcow2"]);
    assert!(images.iter().all(|i| i.sha256.len() == 64 && i.size_bytes > 0));
    assert_ne!(images[0].sha256, images[1].sha256);

    // Invalid ids never reach the file system.
    let bad = VmSpec {
        id: "../etc".into(),
        ..spec(id, "debian-tiny.qcow2", 1, 256)
    };
    assert!(hv.create(&bad).await.is_err());

    // create
    let info = hv.create(&spec(id, "debian-tiny.qcow2", 1, 256)).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.vcpus, Some(1));
    assert_eq!(info.ram_mb, Some(256));
    let base_a = std::fs::canonicalize(fx.guest.join("debian-tiny.qcow2")).unwrap();
    assert_eq!(info.backing_file.as_deref(), Some(base_a.as_path()));
    let pid1 = info.pid.unwrap();
    let up = wait_boots(&hv, id, 1).await;
    eprintln!("first boot after {:?} ({:?})", t0.elapsed(), info.accel);
    assert_eq!(field(&up, "vcpus"), "1");
    let mem_kb: u64 = field(&up, "mem_kb").parse().unwrap();
    assert!((180_000..=262_144).contains(&mem_kb), "{up}");
    assert_eq!(field(&up, "boot"), "1");
    assert_eq!(last_image(&console(&hv, id).await), "debian-tiny");
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");
    assert!(page.contains("hostname=vm-0b0e5c1e"), "{page}");

    // pause / unpause
    hv.pause(id).await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Paused);
    hv.unpause(id).await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Running);

    // reboot: the guest's own, through Ctrl-Alt-Del
    assert_eq!(hv.reboot(id).await.unwrap(), Rebooted::Guest);
    let up = wait_boots(&hv, id, 2).await;
    assert_eq!(field(&up, "boot"), "2");
    assert!(console(&hv, id).await.contains("corral-guest: going down"));

    // hard reboot: a reset, no shutdown in the guest
    hv.hard_reboot(id).await.unwrap();
    let up = wait_boots(&hv, id, 3).await;
    assert_eq!(field(&up, "boot"), "3");
    assert_eq!(hv.inspect(id).await.unwrap().pid, Some(pid1));

    // suspend: state saved, process gone
    let boot_id = field(&up, "boot_id");
    hv.suspend(id).await.unwrap();
    wait_gone(pid1).await;
    let info = hv.inspect(id).await.unwrap();
    assert_eq!(info.state, VmState::Suspended);
    assert_eq!(info.pid, None);
    let dir = hv.instance_dir(id).unwrap();
    assert!(std::fs::metadata(dir.join("vmstate")).unwrap().len() > 0);
    assert!(hv.start(&spec(id, "debian-tiny.qcow2", 1, 256)).await.is_err());

    // resume: the same boot goes on
    let info = hv.resume(id).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_ne!(info.pid, Some(pid1));
    assert!(!dir.join("vmstate").exists());
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains(&format!("boot_id={boot_id}")), "{page}");
    assert!(page.contains("boot=3\n"), "{page}");
    assert_eq!(up_lines(&console(&hv, id).await).len(), 3);

    // resize: cold, with the new shape seen by QEMU and by the guest
    let info = hv.resize(&spec(id, "debian-tiny.qcow2", 2, 384)).await.unwrap();
    assert_eq!(info.vcpus, Some(2));
    assert_eq!(info.ram_mb, Some(384));
    let up = wait_boots(&hv, id, 4).await;
    assert_eq!(field(&up, "vcpus"), "2");
    let mem_kb2: u64 = field(&up, "mem_kb").parse().unwrap();
    assert!(mem_kb2 > mem_kb + 100_000, "{up}");
    assert_eq!(field(&up, "boot"), "4");

    // rebuild on image b: a fresh disk
    let info = hv
        .rebuild(&spec(id, "debian-tiny-b.qcow2", 2, 384))
        .await
        .unwrap();
    let base_b = std::fs::canonicalize(fx.guest.join("debian-tiny-b.qcow2")).unwrap();
    assert_eq!(info.backing_file.as_deref(), Some(base_b.as_path()));
    let up = wait_boots(&hv, id, 5).await;
    assert_eq!(field(&up, "boot"), "1");
    assert_eq!(last_image(&console(&hv, id).await), "debian-tiny-b");

    // snapshot: standalone, and bootable
    let snap = fx.path().join("snap.qcow2");
    hv.snapshot(id, &snap).await.unwrap();
    assert_eq!(backing_of(&snap), None);
    assert_eq!(hv.inspect(id).await.unwrap().state, VmState::Running);
    let id2 = "0b0e5c1e-2222-4c1e-9a55-000000000002";
    let snap_spec = spec(id2, snap.to_str().unwrap(), 1, 256);
    let info2 = hv.create(&snap_spec).await.unwrap();
    assert_eq!(info2.backing_file.as_deref(), Some(snap.as_path()));
    let up2 = wait_boots(&hv, id2, 1).await;
    assert_eq!(last_image(&console(&hv, id2).await), "debian-tiny-b");
    // The snapshot carries the disk's boot counter: this is its second boot.
    assert_eq!(field(&up2, "boot"), "2");
    hv.delete(id2).await.unwrap();
    wait_gone(info2.pid.unwrap()).await;

    // shutdown: the guest powers off by itself on the ACPI button
    let pid = hv.inspect(id).await.unwrap().pid.unwrap();
    assert_eq!(hv.shutdown(id).await.unwrap(), Stopped::Clean);
    assert!(!alive(pid));
    let text = console(&hv, id).await;
    assert!(text.contains("corral-guest: power button"), "{text}");
    let info = hv.inspect(id).await.unwrap();
    assert_eq!(info.state, VmState::Shutoff);
    assert_eq!(info.backing_file.as_deref(), Some(base_b.as_path()));
    assert_eq!(hv.shutdown(id).await.unwrap(), Stopped::AlreadyStopped);

    // start again
    let info = hv.start(&spec(id, "debian-tiny-b.qcow2", 2, 384)).await.unwrap();
    assert_eq!(info.state, VmState::Running);
    let up = wait_boots(&hv, id, 6).await;
    assert_eq!(field(&up, "boot"), "2");

    // rename is metadata
    hv.rename(id, "renamed").await.unwrap();
    assert_eq!(hv.inspect(id).await.unwrap().name, "renamed");

    // delete: process and directory gone; again is fine
    let pid = info.pid.unwrap();
    hv.delete(id).await.unwrap();
    wait_gone(pid).await;
    assert!(!dir.exists());
    hv.delete(id).await.unwrap();
    assert!(hv.inspect(id).await.is_err());
    eprintln!("lifecycle done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_outlive_the_driver_and_are_reattached() {
    let fx = Fixture::new();
    let id = "0b0e5c1e-3333-4c1e-9a55-000000000003";
    let pid = {
        let hv = fx.driver();
        let info = hv.create(&spec(id, "debian-tiny.qcow2", 1, 192)).await.unwrap();
        wait_boots(&hv, id, 1).await;
        info.pid.unwrap()
        // the driver is dropped here
    };
    assert!(alive(pid));

    let hv = fx.driver();
    let all = hv.attach_all().await.unwrap();
    assert_eq!(all.len(), 1);
    let (got_id, info) = &all[0];
    assert_eq!(got_id, id);
    let info = info.as_ref().unwrap();
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.pid, Some(pid));
    assert_eq!(info.ram_mb, Some(192));
    let page = http_get(info.address.unwrap()).await;
    assert!(page.contains("image=debian-tiny\n"), "{page}");

    // Still under control.
    hv.pause(id).await.unwrap();
    assert_eq!(hv.attach(id).await.unwrap().state, VmState::Paused);
    hv.unpause(id).await.unwrap();
    hv.delete(id).await.unwrap();
    wait_gone(pid).await;
    assert!(hv.attach_all().await.unwrap().is_empty());
}
