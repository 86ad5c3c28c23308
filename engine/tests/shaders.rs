//! Every kernel variant the engine can produce parses and validates with naga, with exactly the capabilities it
//! declares — no GPU needed. Also: every WGSL file is reached by some kernel, and each carries its header.

use ferrogem::gpu::kernels::{Requires, SHADER_FILES, validate, validate_with};
use ferrogem::ops::all_kernel_variants;
use std::collections::BTreeSet;

#[test]
fn every_variant_validates() {
    let variants = all_kernel_variants().expect("preprocess every variant");
    assert!(!variants.is_empty(), "the registry produced no kernel variants");
    let mut failures = Vec::new();
    for v in &variants {
        if let Err(e) = validate(v) {
            failures.push(format!("{}: {e}", v.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} variants failed:\n{}", failures.len(), variants.len(), failures.join("\n"));
    let names: BTreeSet<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names.len(), variants.len(), "two variants share a name");
    let with_f16 = variants.iter().filter(|v| v.requires.f16).count();
    let with_subgroups = variants.iter().filter(|v| v.requires.subgroups).count();
    assert!(with_f16 > 0 && with_subgroups > 0, "expected f16 and subgroup variants to be validated too");
    println!("validated {} variants ({with_f16} f16, {with_subgroups} subgroup)", variants.len());
}

#[test]
fn every_shader_file_is_used_and_documented() {
    let variants = all_kernel_variants().unwrap();
    let used: BTreeSet<&str> = variants.iter().map(|v| v.file).collect();
    for (path, text) in SHADER_FILES {
        assert!(
            text.trim_start().starts_with("//"),
            "{path} must start with a header comment (what, bindings, dispatch)"
        );
        if path.starts_with("include/") {
            let needle = format!("#include \"{path}\"");
            assert!(SHADER_FILES.iter().any(|(_, t)| t.contains(&needle)), "{path} is included by no kernel");
        } else {
            assert!(used.contains(path), "{path} belongs to no kernel family");
            assert!(
                text.contains("Bindings") && text.contains("Dispatch"),
                "{path}: the header names bindings and dispatch"
            );
        }
    }
}

/// The validator really checks capabilities: a variant that needs f16 or subgroups fails without them, so the
/// downlevel (browser) variants are proven not to depend on them.
#[test]
fn capability_variants_fail_without_their_capability() {
    let variants = all_kernel_variants().unwrap();
    let needing: Vec<_> = variants.iter().filter(|v| v.requires != Requires::default()).collect();
    assert!(!needing.is_empty());
    for v in needing {
        assert!(validate_with(v, Requires::default()).is_err(), "{} validated without {:?}", v.name, v.requires);
    }
}
