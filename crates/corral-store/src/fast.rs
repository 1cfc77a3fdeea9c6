//! Point reads on SQLite without the worker-thread hop.
//!
//! sqlx runs every SQLite connection on its own thread and hands each statement to it over a
//! channel; for a point read that costs far more (two context switches and futex wake-ups)
//! than the read itself, and it was most of the CPU of an authenticated GET
//! (docs/performance.md). Hot point reads therefore run here, on the calling thread, over a
//! small set of read-only rusqlite connections to the same file (WAL: readers never wait for
//! the writer). Scans and writes stay on sqlx. The SQL text is the same `$N` text.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use corral_types::Error;
use rusqlite::{Connection, OpenFlags};

/// Idle connections kept; more are opened when many reads run at once and closed after.
const KEEP: usize = 8;

pub(crate) struct FastReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl FastReads {
    /// For a `sqlite://PATH[?...]` URL naming a file; `None` for anything else (memory
    /// databases), which then reads through sqlx only.
    pub(crate) fn for_url(url: &str) -> Option<FastReads> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next()?;
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        Some(FastReads {
            path: PathBuf::from(path),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) -> Result<Connection, Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        Ok(conn)
    }

    /// Runs `f` on an idle connection (opening one if none is idle).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, Error> {
        let conn = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => self.open()?,
        };
        let result = f(&conn).map_err(fail);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEEP
        {
            idle.push(conn);
        }
        result
    }
}

fn fail(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            Error::Unavailable("The store is unavailable.".to_string())
        }
        other => Error::internal(format!("database: {other}")),
    }
}
