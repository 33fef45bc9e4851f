//! Link setup for the Python extension: let the loader find libtorch inside the installed
//! `torch` package next to ours (site-packages/torch/lib), whatever the import order.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let python = std::env::var_os("CARGO_FEATURE_PYTHON").is_some();
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if python && linux {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    }
}
