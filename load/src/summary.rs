//! The compact per-route result table both modes print, and append to a file so a runner
//! script can show every run of a session together.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// One route's result in one run.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured against what, e.g. `fleet` or `nginx`.
    pub label: String,
    pub scenario: String,
    /// `closed 100 users` or `open 2000/s`.
    pub mode: String,
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    /// Successful (2xx, whole body read) responses per second over the measured window;
    /// errors are left out because a shed request (a fast 503) is not throughput.
    pub throughput: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

const HEADER: &str = "| label | scenario | mode | route | requests | errors | ok/s | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n";

impl Row {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
            self.label,
            self.scenario,
            self.mode,
            self.route,
            self.requests,
            self.errors,
            self.throughput,
            millis(self.p50_us),
            millis(self.p95_us),
            millis(self.p99_us),
            millis(self.max_us),
        )
    }
}

/// Microseconds as milliseconds with enough digits for sub-millisecond times.
fn millis(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(HEADER);
    for row in rows {
        let _ = write!(text, "{}", row.line());
    }
    text
}

/// Appends the rows to `path`, writing the table's header first unless the file already has
/// one (a runner script may have written notes above the table).
pub fn append(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let fresh = std::fs::read_to_string(path).map_or(true, |text| !text.contains(HEADER));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if fresh {
        file.write_all(HEADER.as_bytes())?;
    }
    for row in rows {
        file.write_all(row.line().as_bytes())?;
    }
    Ok(())
}

/// The value below which `quantile` of the counted times fall, from `(time, count)` buckets
/// sorted by time. Goose keeps its times in such buckets.
pub fn bucket_quantile<'a>(
    buckets: impl Iterator<Item = (&'a u64, &'a usize)>,
    quantile: f64,
) -> u64 {
    let buckets: Vec<(u64, usize)> = buckets.map(|(time, count)| (*time, *count)).collect();
    let total: usize = buckets.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return 0;
    }
    // The rank of the quantile, 1-based, as nearest-rank percentiles are defined.
    let rank = ((quantile * total as f64).ceil() as usize).clamp(1, total);
    let mut seen = 0;
    for (time, count) in &buckets {
        seen += count;
        if seen >= rank {
            return *time;
        }
    }
    buckets.last().map_or(0, |(time, _)| *time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let buckets: Vec<(u64, usize)> = (1..=100).map(|time| (time, 1)).collect();
        let iter = || buckets.iter().map(|(time, count)| (time, count));
        assert_eq!(bucket_quantile(iter(), 0.5), 50);
        assert_eq!(bucket_quantile(iter(), 0.99), 99);
        assert_eq!(bucket_quantile(iter(), 1.0), 100);
        assert_eq!(bucket_quantile(std::iter::empty(), 0.5), 0);
    }

    #[test]
    fn appends_one_header() {
        let dir = std::env::temp_dir().join(format!("pillivery-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.md");
        let _ = std::fs::remove_file(&path);
        let row = Row {
            label: "fleet".into(),
            scenario: "detail".into(),
            mode: "open 10/s".into(),
            route: "detail".into(),
            requests: 10,
            errors: 0,
            throughput: 10.0,
            p50_us: 1_250,
            p95_us: 2_000,
            p99_us: 3_000,
            max_us: 4_000,
        };
        append(&path, std::slice::from_ref(&row)).unwrap();
        append(&path, std::slice::from_ref(&row)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("| label |").count(), 1);
        assert_eq!(text.matches("| 1.25 |").count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
