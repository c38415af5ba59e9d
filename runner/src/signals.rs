//! Stopping a run on request: SIGINT and SIGTERM ask every trial to finish
//! its step, write a checkpoint and be recorded `interrupted`, then the run
//! exits 130 or 143, as a shell expects of a process those signals ended;
//! SIGUSR1 (what Slurm's `--signal` sends before a time limit) does the
//! same and exits 0. A second SIGINT or SIGTERM to the sweep process ends
//! it at once: its workers die with it (they are bound to it), and the last
//! checkpoint, put in place atomically, stays valid. The handlers only set
//! a flag; the training loop and the worker scheduler look at it.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// What stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    /// A warning before a time limit.
    User1,
}

impl Signal {
    pub fn from_number(number: usize) -> Option<Signal> {
        match number as i32 {
            libc::SIGINT => Some(Signal::Interrupt),
            libc::SIGTERM => Some(Signal::Terminate),
            libc::SIGUSR1 => Some(Signal::User1),
            _ => None,
        }
    }

    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::User1 => libc::SIGUSR1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::User1 => "SIGUSR1",
        }
    }

    /// 128 + the signal's number for SIGINT and SIGTERM; 0 for SIGUSR1,
    /// whose sender asked for a clean stop.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::User1 => 0,
            other => 128 + other.number(),
        }
    }
}

fn received() -> &'static Arc<AtomicUsize> {
    static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Who installs the handlers: the sweep process ends at once on a second
/// signal; a worker only ever stops at a step's end (its sweep, not the
/// user, decides when it must die).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sweep,
    Worker,
}

/// Installs the handlers (once per process). Also ignores SIGXFSZ, so a
/// file-size limit makes a write fail with an error bertlab reports rather
/// than kill the process.
pub fn install(role: Role) -> std::io::Result<()> {
    // SAFETY: SIG_IGN installs no code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        if role == Role::Sweep && signal != libc::SIGUSR1 {
            // Registered first, so it sees the flag as the earlier signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&seen))?;
        }
        signal_hook::flag::register(signal, Arc::clone(&seen))?;
        signal_hook::flag::register_usize(signal, Arc::clone(received()), signal as usize)?;
    }
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<Signal> {
    Signal::from_number(received().load(Ordering::Relaxed))
}

/// Takes on a stop another process was asked for, as if `signal` had come
/// here: rank 0 of a trial does, when the ranks agree to stop on another
/// rank's signal, so that a sweep led by rank 0 (under torchrun or srun)
/// ends too instead of starting its next trial on ranks that stop it.
pub fn request(signal: Signal) {
    received().store(signal.number() as usize, Ordering::Relaxed);
}

/// Makes a worker process die with the sweep that started it, whatever
/// ends the sweep (a second signal, a kill), instead of training on
/// unwatched. Called in the child between fork and exec.
pub fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes an integer argument and is
    // async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
