//! Machine description and result formatting (terminal table and markdown).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::load::Outcome;

pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem: String,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let nproc = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
            })
            .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            nproc,
            cpu_model,
            mem,
            kernel,
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{} cores ({}), {} RAM, Linux {}",
            self.nproc, self.cpu_model, self.mem, self.kernel
        )
    }
}

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
pub fn today_utc() -> String {
    date_utc(SystemTime::now())
}

/// A time as "YYYY-MM-DD HH:MM UTC".
pub fn datetime_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!(
        "{} {:02}:{:02} UTC",
        date_utc(t),
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

fn date_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Nanoseconds as milliseconds with a precision that suits the magnitude.
pub fn ms(ns: u64) -> String {
    let v = ns as f64 / 1e6;
    if v < 10.0 {
        format!("{v:.3} ms")
    } else if v < 100.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

pub struct Row<'a> {
    pub label: &'a str,
    pub outcome: &'a Outcome,
}

fn errors_cell(o: &Outcome) -> String {
    let mut s = o.errors().to_string();
    if o.errors() > 0 {
        let mut parts = Vec::new();
        for (st, n) in &o.bad_status {
            parts.push(format!("{n}x{st}"));
        }
        if o.io_errors > 0 {
            parts.push(format!("{}x io", o.io_errors));
        }
        let _ = write!(s, " ({}; {:.2}%)", parts.join(", "), o.error_ratio() * 100.0);
    }
    s
}

pub fn table(rows: &[Row<'_>]) -> String {
    let header = ["target", "req/s", "mean", "p50", "p99", "p99.9", "max", "errors"];
    let mut cells: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for r in rows {
        let o = r.outcome;
        cells.push([
            r.label.to_owned(),
            format!("{:.0}", o.rps()),
            ms(o.hist.mean() as u64),
            ms(o.hist.quantile(0.50)),
            ms(o.hist.quantile(0.99)),
            ms(o.hist.quantile(0.999)),
            ms(o.hist.max()),
            errors_cell(o),
        ]);
    }
    let mut widths = [0usize; 8];
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        for (j, (w, s)) in widths.iter().zip(c).enumerate() {
            if j == 0 {
                let _ = write!(out, "{s:<w$}");
            } else {
                let _ = write!(out, "  {s:>w$}");
            }
        }
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

pub fn markdown_rows(rows: &[Row<'_>]) -> String {
    let mut out = String::from(
        "| target | requests/s | p50 | p99 | p99.9 | max | errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let o = r.outcome;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            r.label,
            o.rps(),
            ms(o.hist.quantile(0.50)),
            ms(o.hist.quantile(0.99)),
            ms(o.hist.quantile(0.999)),
            ms(o.hist.max()),
            errors_cell(o),
        );
    }
    out
}
