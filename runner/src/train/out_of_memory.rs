//! A training step that runs out of memory is run again in micro-batches
//! half the size (the same batch, the same update), down to one example;
//! only then does the trial fail, saying so. libtorch reports the lack as an
//! error of CUDA's caching allocator or of the CPU's; tch turns it into a
//! panic inside an op, and the ops bertlab binds into an error. Both are
//! told apart from every other failure by libtorch's words for it. A rank
//! of a trial on several devices cannot halve alone (the reducer already
//! summed some of its gradients with its peers'): there running out of
//! memory fails the trial, saying which micro-batch to set.
use anyhow::{bail, Result};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use tch::Device;

/// How libtorch's allocators say it: CUDA's "CUDA out of memory", the CPU's
/// "DefaultCPUAllocator: can't allocate memory" or "not enough memory".
const WORDS: [&str; 3] = ["out of memory", "can't allocate memory", "not enough memory"];

fn is_out_of_memory(message: &str) -> bool {
    WORDS.iter().any(|w| message.contains(w))
}

/// Runs `attempt(micro)`, the step in micro-batches of `*micro` examples;
/// when it runs out of memory, halves `*micro` (it stays halved for the
/// steps after) and runs it again. A step's attempt must start from a clean
/// slate: [`super::step::Stepper::step`] clears the gradients first, and
/// nothing is updated before the last backward pass has succeeded.
/// Unless `alone`, the step is not run again.
pub fn with_retries<T>(micro: &mut usize, device: Device, alone: bool, mut attempt: impl FnMut(usize) -> Result<T>) -> Result<T> {
    quiet_out_of_memory_panics();
    loop {
        let message = match catch_unwind(AssertUnwindSafe(|| attempt(*micro))) {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if is_out_of_memory(&format!("{e:#}")) => format!("{e:#}"),
            Ok(Err(e)) => return Err(e),
            Err(panic) => match panic_message(panic.as_ref()) {
                Some(message) if is_out_of_memory(message) => message.to_string(),
                _ => resume_unwind(panic),
            },
        };
        let first_line = summary(&message);
        if *micro <= 1 {
            bail!("out of memory on {device:?} even with micro-batches of 1 example: the model does not fit there ({first_line})");
        }
        if !alone {
            // A rank's micro-batch divides its share of the batch, and so
            // does this, the largest size below it that divides it.
            let smaller = *micro / (2..=*micro).find(|&d| micro.is_multiple_of(d)).unwrap_or(*micro);
            bail!(
                "out of memory on {device:?} with micro-batches of {micro}, one of train.devices: a rank cannot make its micro-batches smaller alone; set train.micro_batch_size = {smaller} ({first_line})",
                micro = *micro
            );
        }
        let smaller = *micro / 2;
        tracing::warn!("out of memory with micro-batches of {micro}: the step runs again with micro-batches of {smaller} ({first_line})", micro = *micro);
        *micro = smaller;
        if device.is_cuda() {
            torch_ops::empty_cache()?;
        }
    }
}

/// libtorch's own sentence from an error or a panic's text: without tch's
/// `called Result::unwrap()` wrapping, the C++ check's prefix and the stack
/// frames after it.
fn summary(message: &str) -> &str {
    let inner = message.split_once("Torch(\"").map_or(message, |(_, rest)| rest);
    let inner = inner.split_once("] ").filter(|_| inner.starts_with('[')).map_or(inner, |(_, rest)| rest);
    let end = ["\\n", "\n", "\")"].iter().filter_map(|stop| inner.find(stop)).min().unwrap_or(inner.len());
    &inner[..end]
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied())
}

/// Keeps the panic hook from printing the panics [`with_retries`] recovers
/// from as if they were crashes; every other panic prints as before.
fn quiet_out_of_memory_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !panic_message(info.payload()).is_some_and(is_out_of_memory) {
                previous(info)
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_out_of_memory_runs_again_halved_and_other_failures_pass_through() {
        // A real allocation failure: a tensor no machine can hold.
        let mut micro = 8;
        let mut tried = Vec::new();
        let done = with_retries(&mut micro, Device::Cpu, true, |m| {
            tried.push(m);
            let elements = if m > 2 { 1i64 << 50 } else { 4 };
            Ok(tch::Tensor::zeros([elements], (tch::Kind::Float, Device::Cpu)).numel())
        })
        .unwrap();
        assert_eq!((done, micro, tried), (4, 2, vec![8, 4, 2]));
        let mut micro = 1;
        let err = with_retries(&mut micro, Device::Cpu, true, |_| Ok(tch::Tensor::zeros([1i64 << 50], (tch::Kind::Float, Device::Cpu)).numel())).unwrap_err();
        assert!(format!("{err}").contains("even with micro-batches of 1 example"), "{err}");
        let mut micro = 4;
        let other = with_retries(&mut micro, Device::Cpu, true, |_| -> Result<()> { bail!("train/loss is NaN") }).unwrap_err();
        assert_eq!((format!("{other}"), micro), ("train/loss is NaN".to_string(), 4));
        let mut micro = 8;
        let rank = with_retries(&mut micro, Device::Cpu, false, |_| Ok(tch::Tensor::zeros([1i64 << 50], (tch::Kind::Float, Device::Cpu)).numel())).unwrap_err();
        assert!(format!("{rank}").contains("set train.micro_batch_size = 4"), "{rank}");
        assert_eq!(micro, 8, "not halved alone");
    }

    #[test]
    fn the_summary_is_libtorchs_sentence() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 309032000 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet")"#;
        assert_eq!(summary(panic), "err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 309032000 bytes. Error code 12 (Cannot allocate memory)");
        assert_eq!(summary("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"), "CUDA out of memory. Tried to allocate 2.00 GiB");
    }
}
