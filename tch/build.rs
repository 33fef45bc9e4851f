//! Link setup for `ucag._tch`: the loader finds libtorch inside the installed `torch`
//! package next to ours (site-packages/torch/lib), whatever the import order, without
//! LD_LIBRARY_PATH. (tch's build script asks the build environment's torch for libtorch.)
//! The test binaries (`cargo test -p ucag-tch --no-default-features`) find it where
//! torch-sys linked it from.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
        if let Ok(libtorch) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
            println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{libtorch}");
        }
    }
}
