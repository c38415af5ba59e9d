//! `bertlab report RUN_DIR_OR_GLOB... [--out FILE]`: the report of one run
//! folder, or of several merged into one comparison.
use crate::error::InputError;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders or glob patterns, e.g. runs/quickstart or 'runs/*'.
    #[arg(required = true, value_name = "RUN_DIR_OR_GLOB")]
    runs: Vec<String>,
    /// The HTML file to write; the Markdown report and its charts go beside
    /// it. Default: RUN_DIR/report.html for one run folder, ./report.html
    /// for several.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn report(args: ReportArgs) -> Result<i32> {
    let dirs = reports::tables::find(&args.runs).map_err(|e| InputError::new(e.to_string()))?;
    for dir in &dirs {
        runfolder::RunFolder::open(dir)?.bring_tables_up_to_date()?;
    }
    let out = args.out.unwrap_or_else(|| match dirs.as_slice() {
        [one] => one.join(runfolder::names::REPORT),
        _ => PathBuf::from(runfolder::names::REPORT),
    });
    let report = reports::write(&dirs, &out, None)?;
    println!("{}", report.summary);
    println!("report: {} and {} ({} run folders)", report.html.display(), report.markdown.display(), dirs.len());
    Ok(0)
}
