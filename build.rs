//! Release-only link setting. The release profile aborts on panic, so nothing
//! unwinds in process and the `.eh_frame_hdr` lookup table (16 KB) is never read:
//! `.eh_frame` stays, so debuggers and profilers still walk the stack.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    }
}
