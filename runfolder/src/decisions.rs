//! The decisions a sweep records as it goes, one [`Journal`] each:
//! early stopping's (`early-stop.jsonl`: who reached which rung with what
//! value, who went on, who was stopped) and a search's (`search.jsonl`:
//! each suggestion's draw, point and trials). The runner writes them; the
//! reports read them for the rung chart, the compute spent and the
//! best-so-far curve.
use crate::journal::Journal;
use crate::names::{EARLY_STOP_LOCK, EARLY_STOP_LOG, SEARCH_LOCK, SEARCH_LOG};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// One line of `early-stop.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EarlyStopEntry {
    /// The trial reached the rung with this value (`None`: not a number).
    Reached { trial: String, rung: i64, value: Option<f64> },
    /// It goes on from the rung: among the best there, or (`finishing`)
    /// the best left at the highest rung while no trial reached its end.
    Promoted {
        trial: String,
        rung: i64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        finishing: bool,
    },
    /// ASHA left it waiting there (pruned, until promoted).
    Waits { trial: String, rung: i64 },
    /// The median rule stopped it there for good.
    Stopped { trial: String, rung: i64 },
}

/// One line of `search.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suggestion {
    /// Which draw of the search's generators made it.
    pub draw: u64,
    /// The value of each searched key.
    pub point: Map<String, Value>,
    /// Its trials, one per seed.
    pub trials: Vec<String>,
}

/// Every suggestion recorded in the run folder `root`, in order.
pub fn suggestions(root: &Path) -> anyhow::Result<Vec<Suggestion>> {
    search_log(root).read()
}

/// The trials of every suggestion recorded in `root`, in order.
pub fn suggested_trials(root: &Path) -> anyhow::Result<Vec<String>> {
    Ok(suggestions(root)?.into_iter().flat_map(|s| s.trials).collect())
}

pub fn early_stop_log(root: &Path) -> Journal {
    Journal::new(&root.join(EARLY_STOP_LOG), &root.join(EARLY_STOP_LOCK))
}

pub fn search_log(root: &Path) -> Journal {
    Journal::new(&root.join(SEARCH_LOG), &root.join(SEARCH_LOCK))
}
