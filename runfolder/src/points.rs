//! `trials/<id>/points.tsv`: every metric point of a trial, appended as it
//! is measured, one `step<TAB>key<TAB>value<TAB>wall_s` line each (Rust's
//! shortest round-trip float text, `NaN` and `inf` included). Each attempt
//! at the trial starts with a `#attempt<TAB>n<TAB>from_step` line; reading
//! keeps, of an earlier attempt, only the steps below where a later one
//! started, so a re-run or a resumed trial never yields a (key, step) twice.
//! A line cut short by a kill is not a point: reading skips it.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// One metric point as the tables record it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub step: i64,
    pub key: String,
    pub value: f64,
    /// Seconds since the trial (this attempt of it) started.
    pub wall_s: f64,
}

/// Appends one attempt's points, buffered until [`PointLog::flush`].
pub struct PointLog {
    file: std::fs::File,
    buffer: Vec<u8>,
}

impl PointLog {
    /// Opens the log of the trial folder `dir` for attempt `attempt`, which
    /// measures steps from `from_step` on.
    pub fn open(dir: &Path, attempt: u32, from_step: i64) -> std::io::Result<PointLog> {
        let path = dir.join(crate::names::POINTS);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        // A kill may have cut the last line short: end it, so the marker
        // starts a line of its own.
        let cut = file.metadata()?.len() > 0 && !ends_with_newline(&dir.join(crate::names::POINTS))?;
        let mut buffer = Vec::new();
        if cut {
            buffer.push(b'\n');
        }
        writeln!(buffer, "#attempt\t{attempt}\t{from_step}")?;
        file.write_all(&buffer)?;
        file.sync_data()?;
        buffer.clear();
        Ok(PointLog { file, buffer })
    }

    pub fn push(&mut self, point: &MetricPoint) {
        // A tab or a line break in a key would break the line format.
        let key = point.key.replace(['\t', '\n', '\r'], " ");
        let _ = writeln!(self.buffer, "{}\t{key}\t{:?}\t{:?}", point.step, point.value, point.wall_s);
    }

    /// Bytes waiting to be written.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Writes what is buffered and makes it durable. A write that fails
    /// part-way (a full disk) is cut back to where it began, so a later
    /// flush never writes the same lines twice.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let before = self.file.metadata()?.len();
            let written = self.file.write_all(&self.buffer);
            self.buffer.clear();
            if let Err(e) = written {
                let _ = self.file.set_len(before);
                return Err(e);
            }
        }
        self.file.sync_data()
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Calls `each` with every point of the trial folder `dir` that is current
/// (see the module doc), in the order they were written; streams the file
/// twice instead of holding it. A missing file has no points.
pub fn for_each(dir: &Path, mut each: impl FnMut(MetricPoint)) -> std::io::Result<()> {
    let path = dir.join(crate::names::POINTS);
    let Ok(file) = std::fs::File::open(&path) else { return Ok(()) };
    // The file as it is now: its owner may append while it is read, and
    // both passes must see the same lines.
    let length = file.metadata()?.len();
    let lines = |length: u64| -> std::io::Result<_> {
        use std::io::Read;
        Ok(BufReader::new(std::fs::File::open(&path)?.take(length)).split(b'\n'))
    };
    drop(file);
    // First pass: where each attempt started, and where the last whole
    // line ends (a line cut short by a kill has no newline yet).
    let mut starts = Vec::new();
    let mut whole = 0u64;
    for line in lines(length)? {
        let line = line?;
        if whole + line.len() as u64 >= length {
            break;
        }
        whole += line.len() as u64 + 1;
        if let Some(from) = attempt_start(&line) {
            starts.push(from);
        }
    }
    // A point of attempt i is current below the first step of every later
    // attempt.
    let mut limit = vec![i64::MAX; starts.len() + 1];
    for i in (0..starts.len()).rev() {
        limit[i] = limit[i + 1].min(starts.get(i + 1).copied().unwrap_or(i64::MAX));
    }
    let mut attempt = 0usize;
    let mut seen_marker = false;
    for line in lines(whole)? {
        let line = line?;
        if attempt_start(&line).is_some() {
            if seen_marker {
                attempt += 1;
            }
            seen_marker = true;
            continue;
        }
        if let Some(point) = parse(&line) {
            if point.step < limit.get(attempt).copied().unwrap_or(i64::MAX) {
                each(point);
            }
        }
    }
    Ok(())
}

fn attempt_start(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?.strip_prefix("#attempt\t")?;
    text.split('\t').nth(1)?.trim().parse().ok()
}

fn parse(line: &[u8]) -> Option<MetricPoint> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split('\t');
    let point = MetricPoint {
        step: fields.next()?.parse().ok()?,
        key: fields.next()?.to_string(),
        value: fields.next()?.parse().ok()?,
        wall_s: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, value: f64) -> MetricPoint {
        MetricPoint { step, key: "train/loss".into(), value, wall_s: step as f64 / 10.0 }
    }

    fn read(dir: &Path) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        for_each(dir, |p| out.push(p)).unwrap();
        out
    }

    #[test]
    fn values_round_trip_exactly_and_a_cut_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PointLog::open(dir.path(), 1, 0).unwrap();
        for (step, value) in [(1, 0.1 + 0.2), (2, f64::NAN), (3, f64::INFINITY), (4, 1e-300)] {
            log.push(&point(step, value));
        }
        log.flush().unwrap();
        // What a kill in the middle of a write leaves.
        let mut file = std::fs::OpenOptions::new().append(true).open(dir.path().join(crate::names::POINTS)).unwrap();
        file.write_all(b"5\ttrain/lo").unwrap();
        let back = read(dir.path());
        assert_eq!(back.len(), 4);
        assert_eq!(back[0].value, 0.1 + 0.2);
        assert!(back[1].value.is_nan());
        assert_eq!(back[2].value, f64::INFINITY);
        assert_eq!(back[3].value, 1e-300);
    }

    #[test]
    fn a_later_attempt_supersedes_the_steps_it_measures_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = PointLog::open(dir.path(), 1, 0).unwrap();
        (0..10).for_each(|s| first.push(&point(s, 1.0)));
        first.flush().unwrap();
        first.file.write_all(b"10\ttrain/").unwrap(); // killed mid-line
        // Resumed from a checkpoint at step 6, then re-run from the start.
        let mut resumed = PointLog::open(dir.path(), 2, 6).unwrap();
        (6..8).for_each(|s| resumed.push(&point(s, 2.0)));
        resumed.flush().unwrap();
        let mut rerun = PointLog::open(dir.path(), 3, 4).unwrap();
        (4..12).for_each(|s| rerun.push(&point(s, 3.0)));
        rerun.flush().unwrap();
        let back: Vec<(i64, f64)> = read(dir.path()).iter().map(|p| (p.step, p.value)).collect();
        let expected: Vec<(i64, f64)> = (0..4).map(|s| (s, 1.0)).chain((4..12).map(|s| (s, 3.0))).collect();
        assert_eq!(back, expected);
    }
}
