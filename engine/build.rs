//! Embeds every WGSL file under `shaders/` (paths relative to it) so kernels need no filesystem at run time.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "wgsl") {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let shaders = manifest_dir.join("../shaders").canonicalize().expect("the shaders/ folder beside engine/");
    println!("cargo:rerun-if-changed={}", shaders.display());
    let mut files = Vec::new();
    collect(&shaders, &shaders, &mut files);
    files.sort();
    for (_, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let mut table = String::from(
        "/// Every file under `shaders/`: (path relative to it, text).\npub static SHADER_FILES: &[(&str, &str)] = &[\n",
    );
    for (rel, path) in &files {
        table.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("shader_files.rs");
    std::fs::write(out, table).expect("write the shader table");
}
