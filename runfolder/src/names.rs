//! Every name the run folder's format spells: its files and folders, and
//! the columns of its two tables. Nothing else in bertlab writes them out.

/// The trials table: one row per trial (a folder of Parquet parts).
pub const TRIALS_TABLE: &str = "trials.parquet";
/// The metrics table: every metric point in long format (a folder of parts).
pub const METRICS_TABLE: &str = "metrics.parquet";
/// The folder of per-trial folders.
pub const TRIALS_DIR: &str = "trials";
/// What the report needs besides the tables (written by `run`).
pub const RUN_INFO: &str = "run.toml";
/// The report, and its Markdown twin beside it.
pub const REPORT: &str = "report.html";
/// Where MLflow records wait when the server could not take them.
pub const TRACKING_SPOOL: &str = "tracking-spool";
/// The lock that orders changes to the tables' parts.
pub const TABLES_LOCK: &str = ".tables-lock";
/// `--launcher slurm`'s folder: the batch scripts and their trial lists.
pub const SLURM_DIR: &str = "slurm";
/// In [`SLURM_DIR`]: the array tasks' standard output and error.
pub const SLURM_LOGS: &str = "logs";
/// In [`SLURM_DIR`]: one JSON line per submitted job array.
pub const SLURM_SUBMISSIONS: &str = "submissions.jsonl";
/// In [`SLURM_DIR`]: the job ids `bertlab cancel` cancelled, one per
/// line, so their tasks do not requeue themselves on the way out.
pub const SLURM_CANCELLED: &str = "cancelled";
/// Early stopping's state: one JSON line per trial reaching a rung, and
/// per promotion or pruning, in the order they happened.
pub const EARLY_STOP_LOG: &str = "early-stop.jsonl";
/// The lock that orders writes to [`EARLY_STOP_LOG`].
pub const EARLY_STOP_LOCK: &str = ".early-stop-lock";
/// A search's suggestions: one JSON line each, with its draw, its point
/// and its trials, in the order they were made.
pub const SEARCH_LOG: &str = "search.jsonl";
/// The lock that orders writes to [`SEARCH_LOG`].
pub const SEARCH_LOCK: &str = ".search-lock";
/// In [`SLURM_DIR`]: the lock that orders submissions.
pub const SLURM_LOCK: &str = ".submit-lock";

/// In a trial's folder: the resolved configuration as a one-trial
/// experiment file.
pub const CONFIG: &str = "config.toml";
/// In a trial's folder: what happened, in lines for people.
pub const LOG: &str = "log.txt";
/// In a trial's folder: the trial's status, progress, row and curves.
pub const RECORD: &str = "record.json";
/// In a trial's folder: every metric point, appended as it is measured.
pub const POINTS: &str = "points.tsv";
/// In a trial's folder: a `run --jobs` worker's standard error.
pub const WORKER_LOG: &str = "worker.log";

/// In a trial's folder: the standard error of rank `rank` (1 and up) of a
/// trial on several devices (`rank-1.log`); rank 0's is the worker's.
pub fn rank_log(rank: usize) -> String {
    format!("rank-{rank}.log")
}

/// Columns of the trials table (besides the swept keys and the metrics).
pub mod column {
    pub const TRIAL_ID: &str = "trial_id";
    pub const EXPERIMENT: &str = "experiment";
    pub const STATUS: &str = "status";
    pub const SEED: &str = "seed";
    pub const TASK: &str = "task";
    pub const PARAMS: &str = "params";
    pub const TOKENS: &str = "tokens";
    pub const FLOPS: &str = "flops";
    pub const WALL_S: &str = "wall_s";
    pub const ERROR: &str = "error";
    /// The rung (step) early stopping left a pruned trial at.
    pub const RUNG: &str = "rung";
    /// Columns of the metrics table besides `trial_id` and `wall_s`.
    pub const STEP: &str = "step";
    pub const KEY: &str = "key";
    pub const VALUE: &str = "value";
}
