//! Embeds the web console (`console/`) into the binary: a table of every file's path, bytes
//! (`include_bytes!`, so the build never reads the files at run time) and a content hash for
//! its `ETag`. Cargo reruns this when anything under `console/` changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), path));
        }
    }
}

/// FNV-1a, 64 bits: a cache validator, not a security hash.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let root = manifest.join("console");
    println!("cargo:rerun-if-changed=console");
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code = String::from(
        "/// The console's files: (path under `console/`, bytes, ETag), sorted by path.\n\
         pub(crate) static ASSETS: &[(&str, &[u8], &str)] = &[\n",
    );
    for (rel, path) in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        let etag = format!("\"{:016x}-{:x}\"", fnv(&bytes), bytes.len());
        let _ = writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?}), {etag:?}),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("console_assets.rs");
    if let Err(e) = std::fs::write(&out, code) {
        eprintln!("cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
