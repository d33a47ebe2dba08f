//! The fuzz crate (fuzz/) compiles the program's modules by path; one missing
//! there breaks `make fuzz-smoke` in CI. This finds it in `make test` already.

#[test]
fn the_fuzz_crate_includes_every_module_of_the_program() {
    let main = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs"))
        .expect("reading src/main.rs");
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/src/lib.rs"))
        .expect("reading fuzz/src/lib.rs");
    let modules: Vec<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    assert!(modules.len() > 10, "no modules found in src/main.rs");
    for m in modules {
        assert!(
            lib.contains(&format!("pub mod {m};")),
            "fuzz/src/lib.rs does not include src/{m}: add #[path = \"../../src/{m}.rs\"] pub mod {m};"
        );
    }
}
