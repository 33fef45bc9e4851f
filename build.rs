//! Link setup for the Python extension (feature `python`): the loader finds libtorch inside
//! the installed `torch` package next to ours (site-packages/torch/lib), whatever the import
//! order, without LD_LIBRARY_PATH. (The torch to build against is checked before cargo
//! runs, by build_backend/ucag_build.py; tch's build script then asks that torch for libtorch.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let python = std::env::var_os("CARGO_FEATURE_PYTHON").is_some();
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if python && linux {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    }
}
