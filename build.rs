//! Build checks and link setup for the Python extension (feature `python`):
//! - the Python environment must hold the torch ucag pins (tch links its libtorch), with a
//!   clear message otherwise;
//! - the loader finds libtorch inside the installed `torch` package next to ours
//!   (site-packages/torch/lib), whatever the import order, without LD_LIBRARY_PATH.

use std::process::Command;

/// The torch minor version tch 0.24 is built for; pyproject.toml pins the same.
const TORCH_SERIES: &str = "2.11.";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    check_torch();
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    }
}

/// Asks the same interpreter tch's build script asks (`python` in a virtualenv, else
/// `python3`) which torch it has.
fn check_torch() {
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let output = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output();
    let version = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "\n\nucag: building the extension needs torch=={TORCH_SERIES}* in the Python environment, and \
             `{python} -c 'import torch'` failed:\n{}\nInstall it (pip install 'torch=={TORCH_SERIES}*') or let pip \
             build in its default isolated environment, which installs it.\n",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!("\n\nucag: cannot run `{python}` to find torch ({err}); build inside the Python environment\n"),
    };
    if !version.starts_with(TORCH_SERIES) {
        panic!(
            "\n\nucag: this version of ucag is built for torch=={TORCH_SERIES}* (its libtorch ABI), but the \
             Python environment has torch {version}. Install 'torch=={TORCH_SERIES}*' to build.\n"
        );
    }
}
