//! Link setup for `ucag._tch`: the loader finds libtorch inside the installed `torch`
//! package next to ours (site-packages/torch/lib), whatever the import order, without
//! LD_LIBRARY_PATH. (tch's build script asks the build environment's torch for libtorch.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    }
}
