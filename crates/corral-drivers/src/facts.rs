//! Host facts: the script that gathers them over SSH and its parser.
//!
//! One round trip gathers everything the investigation needs (spec 3.1 and 2.4), so the script
//! prints `key=value` lines and the parser is strict about the keys it needs: a host that
//! answers half the facts is a failed investigation with a reason, never zeros stored as truth.

use std::time::Duration;

/// A comment carried by [`FACTS_SCRIPT`]; it survives shell quoting, so a fake transport can
/// recognise the facts command in whatever wrapper the caller put around it.
pub const FACTS_MARKER: &str = "corral-facts-v1";

/// POSIX `sh` script printing one `key=value` line each for `os_id`, `ostree`, `cpus`,
/// `memory_kb`, `space_kb` and `hostname`.
///
/// * `os_id`: `ID` of `/etc/os-release` (quotes removed), empty when the file is missing.
/// * `ostree`: `1` when `/run/ostree-booted` exists (an Atomic/ostree host), else `0`.
/// * `cpus`: online logical CPUs (`getconf _NPROCESSORS_ONLN`, else `nproc`).
/// * `memory_kb`: `MemTotal` of `/proc/meminfo`.
/// * `space_kb`: sum of the sizes (KiB) of mounted local filesystems on block devices
///   (`df -P -k -l`, device under `/dev/`), leaving out tmpfs, devtmpfs, overlay and squashfs
///   (snap and live images are read-only copies, not space) and counting each device once
///   (bind mounts and btrfs subvolumes repeat a device).
/// * `hostname`: `hostname -f`, else `hostname`, else the kernel's name.
///
/// Every probe falls back to a value instead of failing so that one missing tool does not
/// hide the others; [`parse_facts`] then judges the result. Run it through `sh` explicitly
/// (see [`facts_command`]): the remote user's login shell may not be POSIX.
pub const FACTS_SCRIPT: &str = r#"# corral-facts-v1
PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LC_ALL=C
export PATH LC_ALL
os_id=''
if [ -r /etc/os-release ]; then
  os_id=$(sed -n 's/^ID=//p' /etc/os-release | head -n 1 | tr -d "\"' ")
fi
echo "os_id=$os_id"
if [ -e /run/ostree-booted ]; then echo 'ostree=1'; else echo 'ostree=0'; fi
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || cpus=''
[ -n "$cpus" ] || cpus=$(nproc 2>/dev/null) || cpus=''
echo "cpus=$cpus"
echo "memory_kb=$(awk '$1 == "MemTotal:" { print $2; exit }' /proc/meminfo 2>/dev/null)"
space=$( (df -P -k -l 2>/dev/null || df -P -k 2>/dev/null) | awk '
  FNR == NR {
    m = $2; gsub(/\\040/, " ", m); type[m] = $3; next
  }
  FNR > 1 && $1 ~ /^\/dev\// {
    m = $6; for (i = 7; i <= NF; i++) m = m " " $i
    t = type[m]
    if (t == "tmpfs" || t == "devtmpfs" || t == "overlay" || t == "squashfs") next
    if (seen[$1]++) next
    sum += $2
  }
  END { printf "%.0f\n", sum }
' /proc/mounts -)
echo "space_kb=$space"
name=$(hostname -f 2>/dev/null) || name=''
[ -n "$name" ] || name=$(hostname 2>/dev/null) || name=''
[ -n "$name" ] || name=$(cat /proc/sys/kernel/hostname 2>/dev/null) || name=''
echo "hostname=$name"
"#;

/// The command to pass to `exec` to gather facts: [`FACTS_SCRIPT`] run by `sh -c`, quoted so that
/// any remote login shell (bash, zsh, dash, fish) hands it to `sh` unchanged.
pub fn facts_command() -> String {
    format!("sh -c {}", shell_quote(FACTS_SCRIPT))
}

/// Quotes `s` as one single-quoted shell word (`'` becomes `'\''`). Works in every Bourne-style
/// shell and in fish, so commands built from data (a deploy version, a path) cannot break out.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Wraps `command` so that the host itself ends it once `limit` has passed, even if the
/// connection is gone: `timeout -k 5 <limit + 1 s> sh -c '<command>'` (coreutils, present on
/// every distribution Corral supports). The host sends `TERM` one second after the caller's own
/// limit (so the caller reports its `Timeout` first), then `KILL` 5 s later, to the command's
/// whole process group. The command then runs under `sh`, not the user's login shell; its exit
/// status is 124 if the host's limit ended it.
pub fn with_remote_timeout(command: &str, limit: Duration) -> String {
    let secs = limit.as_secs() + u64::from(limit.subsec_nanos() > 0) + 1;
    format!("timeout -k 5 {secs} sh -c {}", shell_quote(command))
}

/// The facts of a host, as [`FACTS_SCRIPT`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `ID` of `/etc/os-release` (`fedora`, `debian`, ...); empty if the host has none.
    pub os_id: String,
    /// `/run/ostree-booted` exists: the host is `atomic` whatever its `ID` (spec 2.4).
    pub ostree: bool,
    /// Online logical CPUs.
    pub cpus: i64,
    /// `MemTotal`, KiB.
    pub memory_kb: i64,
    /// Local block-device filesystem space, KiB.
    pub space_kb: i64,
    /// Fully qualified host name when the host knows it, else its short name.
    pub hostname: String,
}

impl Facts {
    /// The output [`FACTS_SCRIPT`] would print for these facts; what the simulated transport
    /// answers, and the inverse of [`parse_facts`].
    pub fn to_script_output(&self) -> String {
        format!(
            "os_id={}\nostree={}\ncpus={}\nmemory_kb={}\nspace_kb={}\nhostname={}\n",
            self.os_id,
            u8::from(self.ostree),
            self.cpus,
            self.memory_kb,
            self.space_kb,
            self.hostname
        )
    }
}

/// Parses the output of [`FACTS_SCRIPT`].
///
/// Unknown keys and lines without `=` are ignored (login banners, `motd` noise, a newer script);
/// each needed key must appear, the numbers must be non-negative integers and `cpus` and
/// `memory_kb` positive: a host with no CPU or memory answered wrongly, and storing zeros would
/// look like "not yet investigated". The error names the offending key.
pub fn parse_facts(stdout: &str) -> Result<Facts, String> {
    let mut os_id = None;
    let mut ostree = None;
    let mut cpus = None;
    let mut memory_kb = None;
    let mut space_kb = None;
    let mut hostname = None;
    for line in stdout.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "os_id" => os_id = Some(value.trim_matches(['"', '\'']).to_owned()),
            "ostree" => {
                ostree = Some(match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("Invalid fact ostree='{value}': expected 0 or 1.")),
                })
            }
            "cpus" => cpus = Some(number("cpus", value)?),
            "memory_kb" => memory_kb = Some(number("memory_kb", value)?),
            "space_kb" => space_kb = Some(number("space_kb", value)?),
            "hostname" => hostname = Some(value.to_owned()),
            _ => {}
        }
    }
    let missing = |key: &str| format!("The host did not report the fact '{key}'.");
    let facts = Facts {
        os_id: os_id.ok_or_else(|| missing("os_id"))?,
        ostree: ostree.ok_or_else(|| missing("ostree"))?,
        cpus: cpus.ok_or_else(|| missing("cpus"))?,
        memory_kb: memory_kb.ok_or_else(|| missing("memory_kb"))?,
        space_kb: space_kb.ok_or_else(|| missing("space_kb"))?,
        hostname: hostname.ok_or_else(|| missing("hostname"))?,
    };
    if facts.cpus == 0 {
        return Err("The host reported 0 CPUs.".to_owned());
    }
    if facts.memory_kb == 0 {
        return Err("The host reported no memory (MemTotal).".to_owned());
    }
    Ok(facts)
}

fn number(key: &str, value: &str) -> Result<i64, String> {
    if value.is_empty() {
        return Err(format!("The host did not report the fact '{key}'."));
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("Invalid fact {key}='{value}': expected a non-negative integer."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Facts {
        Facts {
            os_id: "fedora".into(),
            ostree: true,
            cpus: 4,
            memory_kb: 11_989_228,
            space_kb: 487_652,
            hostname: "node1.example.org".into(),
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(parse_facts(&sample().to_script_output()).unwrap(), sample());
    }

    #[test]
    fn noise_crlf_quotes_and_unknown_keys_are_tolerated() {
        let out = "Welcome to node1!\r\nos_id=\"fedora\"\r\nostree=1\r\nnew_fact=7\r\ncpus=4\r\n\
                   memory_kb=11989228\r\nspace_kb=487652\r\nhostname=node1.example.org\r\n";
        assert_eq!(parse_facts(out).unwrap(), sample());
    }

    #[test]
    fn empty_os_id_is_a_valid_answer() {
        let mut f = sample();
        f.os_id = String::new();
        assert_eq!(parse_facts(&f.to_script_output()).unwrap().os_id, "");
    }

    #[test]
    fn missing_or_bad_values_name_the_fact() {
        let good = sample().to_script_output();
        for (key, needle) in [
            ("cpus", "'cpus'"),
            ("memory_kb", "'memory_kb'"),
            ("space_kb", "'space_kb'"),
            ("hostname", "'hostname'"),
            ("os_id", "'os_id'"),
            ("ostree", "'ostree'"),
        ] {
            let without: String = good
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}=")))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = parse_facts(&without).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        for bad in [
            "cpus=",
            "cpus=four",
            "cpus=-1",
            "memory_kb=1.5",
            "ostree=yes",
            "cpus=0",
            "memory_kb=0",
        ] {
            let key = bad.split('=').next().unwrap_or_default();
            let text: String = good
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("{key}=")) {
                        bad.to_owned()
                    } else {
                        l.to_owned()
                    }
                })
                .map(|l| format!("{l}\n"))
                .collect();
            assert!(parse_facts(&text).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn remote_timeout_rounds_up_and_quotes() {
        assert_eq!(
            with_remote_timeout("echo 'hi'", Duration::from_millis(1500)),
            r"timeout -k 5 3 sh -c 'echo '\''hi'\'''"
        );
        assert_eq!(
            with_remote_timeout("true", Duration::from_secs(10)),
            "timeout -k 5 11 sh -c 'true'"
        );
    }

    #[test]
    fn shell_quote_escapes_single_quotes() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert_eq!(shell_quote(""), "''");
        assert!(facts_command().contains(FACTS_MARKER));
    }
}
