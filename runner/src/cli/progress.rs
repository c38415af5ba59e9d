//! The sweep's display: a bar for the sweep and one for the running trial on
//! a terminal; plain lines (one per trial) when output goes to a file or CI.
use crate::launch::SweepDisplay;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    multi: MultiProgress,
    sweep: ProgressBar,
    interactive: bool,
}

impl Progress {
    pub fn new(trials: u64) -> Progress {
        let interactive = std::io::stderr().is_terminal();
        let target = if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let sweep = multi.add(ProgressBar::new(trials));
        sweep.set_style(
            ProgressStyle::with_template("sweep {bar:30.cyan/blue} {pos}/{len} trials  {elapsed_precise}")
                .expect("valid template"),
        );
        Progress { multi, sweep, interactive }
    }

    pub fn finish(&self) {
        self.sweep.finish_and_clear();
    }
}

impl SweepDisplay for Progress {
    fn line(&self, message: &str) {
        if self.interactive {
            let _ = self.multi.println(message);
        } else {
            eprintln!("{message}");
        }
    }

    fn trial_bar(&self, label: &str, steps: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(steps));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {bar:30.green/white} {pos}/{len} steps {msg} (eta {eta})")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        if !self.interactive {
            eprintln!("start {label}");
        }
        bar
    }

    fn advance(&self) {
        self.sweep.inc(1);
    }
}
