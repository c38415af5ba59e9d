//! Where a trial stands. The record says `running` while its owner trains
//! it; a reader that finds the owner gone reports it `interrupted`, so a
//! killed run never leaves a ghost `running` trial behind. A trial stopped
//! on purpose (a signal, a failed write) is recorded `interrupted` itself;
//! one early stopping paused at a rung, `pruned` (it may be promoted later
//! and go on from its checkpoint there).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    Running,
    Completed,
    Failed,
    /// Was running, and stopped before its end: on purpose (recorded so),
    /// or its owner died (read so). A re-run resumes it.
    Interrupted,
    /// Early stopping left it at a rung (its step), checkpoint kept.
    Pruned,
}

impl TrialStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Running => "running",
            TrialStatus::Completed => "completed",
            TrialStatus::Failed => "failed",
            TrialStatus::Interrupted => "interrupted",
            TrialStatus::Pruned => "pruned",
        }
    }

    pub fn parse(word: &str) -> Option<TrialStatus> {
        [TrialStatus::Running, TrialStatus::Completed, TrialStatus::Failed, TrialStatus::Interrupted, TrialStatus::Pruned].into_iter().find(|s| s.as_str() == word)
    }
}

impl std::fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
