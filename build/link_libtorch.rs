//! Build script shared by every crate whose binaries or tests link libtorch.
//!
//! Two things the default link line gets wrong for us:
//! - Rust links with `--as-needed`, and nothing references `libtorch_cuda.so`
//!   by symbol (CUDA kernels register themselves from static initialisers), so
//!   the linker silently drops it and CUDA is never available at run time. We
//!   force it back in when the libtorch we build against has it.
//! - libtorch lives in the project's virtual environment, not in a system
//!   path: an rpath lets `target/*/bertlab` run without `LD_LIBRARY_PATH`.
//!
//! Link args from a build script reach only the package's own binaries and
//! tests, which is why each such crate names this file as its `build` script.
use std::path::Path;

fn main() {
    // Set by torch-sys (`links = "tch"`) for crates that depend on it directly.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
