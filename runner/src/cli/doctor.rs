//! `bertlab doctor`: what this machine offers bertlab — the libtorch this
//! process loaded, CUDA devices, CPU threads.
use anyhow::Result;
use std::path::{Path, PathBuf};

pub fn print() -> Result<()> {
    println!("bertlab       {}", env!("CARGO_PKG_VERSION"));
    match loaded_libtorch() {
        Some(dir) => println!("libtorch      {} ({})", libtorch_version(&dir).unwrap_or_else(|| "unknown version".into()), dir.display()),
        None => println!("libtorch      not found among the loaded libraries"),
    }
    let count = tch::Cuda::device_count();
    if tch::Cuda::is_available() {
        println!("cuda          available: {count} device(s), cuDNN {}", tch::utils::version_cudnn());
        let names = crate::train::device::gpu_names();
        for index in 0..count as usize {
            println!("  cuda:{index}      {}", names.get(index).map(String::as_str).unwrap_or("(name unknown)"));
        }
    } else {
        let linked = if cuda_linked() { "libtorch_cuda is loaded but sees no device" } else { "this libtorch has no CUDA" };
        println!("cuda          not available ({linked})");
    }
    println!("cpu threads   {} (libtorch intra-op; set OMP_NUM_THREADS to change)", tch::get_num_threads());
    Ok(())
}

/// The version of the libtorch this process loaded, for provenance.
pub fn libtorch() -> String {
    loaded_libtorch().and_then(|dir| libtorch_version(&dir)).unwrap_or_else(|| "unknown".into())
}

fn loaded_libraries() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).map(PathBuf::from).collect()
}

/// The folder of the `libtorch_cpu.so` this process actually mapped, which
/// is what runs, whatever the build used.
fn loaded_libtorch() -> Option<PathBuf> {
    loaded_libraries()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libtorch_cpu.so"))
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

fn cuda_linked() -> bool {
    loaded_libraries().iter().any(|p| p.file_name().is_some_and(|n| n == "libtorch_cuda.so"))
}

/// From the PyTorch wheel's `torch/version.py`, or a libtorch archive's
/// `build-version`, beside the library folder.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_string())
}
