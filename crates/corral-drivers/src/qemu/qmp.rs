//! A small QMP client: JSON lines over QEMU's monitor socket.
//!
//! QMP opens with a greeting, wants `qmp_capabilities` before anything else, and interleaves
//! asynchronous events (`SHUTDOWN`, `RESET`, `STOP`, `RESUME`, `POWERDOWN`...) with command
//! answers, so an answer is matched by the `id` the command carried and every event read on the
//! way is kept, in order, for the caller ([`QmpClient::take_events`], [`QmpClient::wait_event`]).
//!
//! One connection per driver operation: QEMU serves one QMP client at a time, and a short-lived
//! connection can never go stale across a VM restart or be left held by a dropped driver.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, timeout_at};

/// Longest QMP line accepted: a `query-*` answer for one tiny VM is a few KiB; anything far
/// larger means the peer is not QEMU.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// `SHUTDOWN`, `RESET`, `STOP`, `RESUME`, `POWERDOWN`, ...
    pub name: String,
    /// Its `data` member (`Null` when absent).
    pub data: Value,
}

/// Why a QMP exchange failed. Kept apart from [`super::QemuError`] so the driver can tell a
/// refused command from a dead socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    /// Connecting or talking to the socket failed, or QEMU closed it.
    #[error("the QMP connection failed: {0}")]
    Io(String),
    /// QEMU answered with something that is not QMP.
    #[error("QEMU sent an unexpected QMP message: {0}")]
    Protocol(String),
    /// QEMU refused the command (its `error.class` and `error.desc`).
    #[error("{class}: {desc}")]
    Command {
        /// e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// QEMU's own sentence.
        desc: String,
    },
    /// No answer before the deadline.
    #[error("QEMU did not answer in time")]
    Timeout,
}

/// A negotiated QMP session (capabilities exchanged).
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    events: Vec<QmpEvent>,
    next_id: u64,
    /// QEMU's version from the greeting, e.g. `7.2.22`.
    version: String,
}

impl QmpClient {
    /// Connects to the socket, reads the greeting and negotiates capabilities, all within
    /// `limit`.
    pub async fn connect(socket: &Path, limit: Duration) -> Result<Self, QmpError> {
        let deadline = Instant::now() + limit;
        let stream = timeout_at(deadline, UnixStream::connect(socket))
            .await
            .map_err(|_| QmpError::Timeout)?
            .map_err(|e| QmpError::Io(e.to_string()))?;
        let (r, w) = stream.into_split();
        let mut client = QmpClient {
            reader: BufReader::new(r),
            writer: w,
            events: Vec::new(),
            next_id: 1,
            version: String::new(),
        };
        let greeting = client.read_message(deadline).await?;
        let Some(qmp) = greeting.get("QMP") else {
            return Err(QmpError::Protocol(format!("no greeting: {greeting}")));
        };
        let v = &qmp["version"]["qemu"];
        client.version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        client.execute_until("qmp_capabilities", None, deadline).await?;
        Ok(client)
    }

    /// QEMU's version as the greeting announced it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs one command and answers its `return` value, keeping the events read meanwhile.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        limit: Duration,
    ) -> Result<Value, QmpError> {
        self.execute_until(command, arguments, Instant::now() + limit)
            .await
    }

    async fn execute_until(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        deadline: Instant,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        timeout_at(deadline, self.writer.write_all(line.as_bytes()))
            .await
            .map_err(|_| QmpError::Timeout)?
            .map_err(|e| QmpError::Io(e.to_string()))?;
        loop {
            let m = self.read_message(deadline).await?;
            if self.keep_event(&m) {
                continue;
            }
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                // An answer to a command of an earlier, abandoned exchange: not ours.
                continue;
            }
            if let Some(ret) = m.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = m.get("error") {
                return Err(QmpError::Command {
                    class: err["class"].as_str().unwrap_or("Error").to_string(),
                    desc: err["desc"].as_str().unwrap_or("no description").to_string(),
                });
            }
            return Err(QmpError::Protocol(m.to_string()));
        }
    }

    /// Waits until an event named `name` has arrived (or had arrived already) and answers it;
    /// other events stay queued.
    pub async fn wait_event(&mut self, name: &str, limit: Duration) -> Result<QmpEvent, QmpError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pos) = self.events.iter().position(|e| e.name == name) {
                return Ok(self.events.remove(pos));
            }
            let m = self.read_message(deadline).await?;
            if !self.keep_event(&m) {
                return Err(QmpError::Protocol(format!("unexpected message: {m}")));
            }
        }
    }

    /// The events read so far, oldest first; the queue is emptied.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        std::mem::take(&mut self.events)
    }

    /// Queues `m` if it is an event.
    fn keep_event(&mut self, m: &Value) -> bool {
        match m.get("event").and_then(Value::as_str) {
            Some(name) => {
                self.events.push(QmpEvent {
                    name: name.to_string(),
                    data: m.get("data").cloned().unwrap_or(Value::Null),
                });
                true
            }
            None => false,
        }
    }

    async fn read_message(&mut self, deadline: Instant) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = timeout_at(
                deadline,
                (&mut self.reader).take(MAX_LINE as u64).read_line(&mut line),
            )
            .await
            .map_err(|_| QmpError::Timeout)?
            .map_err(|e| QmpError::Io(e.to_string()))?;
            if n == 0 {
                return Err(QmpError::Io("QEMU closed the connection".into()));
            }
            if !line.ends_with('\n') && n >= MAX_LINE {
                return Err(QmpError::Protocol("message too long".into()));
            }
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            return serde_json::from_str(trimmed).map_err(|e| QmpError::Protocol(format!("{e}: {trimmed}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake QEMU that sends events before the answers, as the real one does.
    #[tokio::test]
    async fn events_are_kept_apart_from_answers() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("corral-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let sock = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await?;
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}, \"capabilities\": []}}\n").await?;
            let mut line = String::new();
            r.read_line(&mut line).await?; // qmp_capabilities, id 1
            w.write_all(b"{\"return\": {}, \"id\": 1}\n").await?;
            line.clear();
            r.read_line(&mut line).await?; // query-status, id 2
            w.write_all(b"{\"event\": \"STOP\", \"data\": {}, \"timestamp\": {}}\n{\"return\": {\"status\": \"paused\"}, \"id\": 2}\n").await?;
            line.clear();
            r.read_line(&mut line).await?; // bogus, id 3
            w.write_all(b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}, \"id\": 3}\n{\"event\": \"RESET\"}\n").await?;
            Ok::<_, std::io::Error>(())
        });
        let mut c = QmpClient::connect(&sock, Duration::from_secs(5)).await?;
        assert_eq!(c.version(), "7.2.0");
        let st = c.execute("query-status", None, Duration::from_secs(5)).await?;
        assert_eq!(st["status"], "paused");
        let err = c.execute("bogus", None, Duration::from_secs(5)).await;
        assert_eq!(
            err,
            Err(QmpError::Command {
                class: "CommandNotFound".into(),
                desc: "nope".into()
            })
        );
        let reset = c.wait_event("RESET", Duration::from_secs(5)).await?;
        assert_eq!(reset.data, Value::Null);
        let rest = c.take_events();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "STOP");
        server.await??;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
