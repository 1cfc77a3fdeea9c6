//! Host addresses (README 6.3): IPv4, IPv6 and DNS names, canonicalised so that every spelling
//! of one host names one row; and the operator's allow-list of the addresses Corral may reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use corral_types::{Error, HostAddress};

/// The contract's 400 for anything that is not a host address.
pub fn invalid_address(value: &str) -> Error {
    Error::bad_request(format!("Invalid host address '{value}'."))
}

/// Canonicalises a host address: IPv4 unchanged (leading zeros refused); IPv6 (brackets
/// allowed) in RFC 5952 form, an IPv4-mapped one as IPv4; DNS names in lower case without a
/// trailing dot. The only way from input to a [`HostAddress`].
pub fn canonical_address(value: &str) -> Result<HostAddress, Error> {
    canonical(value).map(HostAddress::from_trusted)
}

fn canonical(value: &str) -> Result<String, Error> {
    let v = value.trim_start_matches('[').trim_end_matches(']');
    let bracketed = v.len() != value.len();
    if bracketed && !(value.starts_with('[') && value.ends_with(']')) {
        return Err(invalid_address(value));
    }
    if let Ok(v6) = v.parse::<Ipv6Addr>() {
        return Ok(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        });
    }
    if bracketed {
        return Err(invalid_address(value));
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') && v.contains('.') {
        // Looks like IPv4: it must be a valid dotted quad, without leading zeros.
        return match v.parse::<Ipv4Addr>() {
            Ok(ip) if ip.to_string() == v => Ok(v.to_string()),
            _ => Err(invalid_address(value)),
        };
    }
    let name = v.strip_suffix('.').unwrap_or(v);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(invalid_address(value));
    }
    Ok(name.to_ascii_lowercase())
}

/// The networks and DNS suffixes hosts may have (server setting `host_allow`). Empty means
/// any: the operator's default. A DNS name is checked by its suffix only, never resolved here.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    nets: Vec<(IpAddr, u8)>,
    suffixes: Vec<String>,
}

impl AddressPolicy {
    /// Parses entries such as `127.0.0.0/8`, `::1/128`, `10.1.2.3` or `.lab.example.com`.
    pub fn parse(entries: &[String]) -> Result<AddressPolicy, String> {
        let mut p = AddressPolicy::default();
        for e in entries {
            let e = e.trim();
            if let Some(suffix) = e.strip_prefix('.') {
                p.suffixes.push(format!(".{}", suffix.to_ascii_lowercase()));
                continue;
            }
            let (ip, len) = match e.split_once('/') {
                Some((ip, len)) => (ip, Some(len)),
                None => (e, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("host_allow: '{e}' is neither a CIDR nor a .suffix"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("host_allow: bad prefix in '{e}'"))?,
                None => max,
            };
            p.nets.push((ip, len));
        }
        Ok(p)
    }

    pub fn is_open(&self) -> bool {
        self.nets.is_empty() && self.suffixes.is_empty()
    }

    /// May Corral contact this (canonical) address?
    pub fn allows(&self, address: &HostAddress) -> bool {
        if self.is_open() {
            return true;
        }
        let address = address.as_str();
        match address.parse::<IpAddr>() {
            Ok(ip) => self.nets.iter().any(|(net, len)| in_net(ip, *net, *len)),
            Err(_) => self.suffixes.iter().any(|s| address.ends_with(s.as_str())),
        }
    }

    /// The 403 for an address outside the policy.
    pub fn refusal(&self, address: &HostAddress) -> Error {
        Error::forbidden(format!(
            "Host address '{address}' is outside the networks this server may contact (setting host_allow)."
        ))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("192.168.100.50", "192.168.100.50"),
            ("FE80::1", "fe80::1"),
            ("fe80:0:0:0:0:0:0:1", "fe80::1"),
            ("[fe80::1]", "fe80::1"),
            ("::ffff:10.0.0.5", "10.0.0.5"),
            ("Node-1.Example.COM.", "node-1.example.com"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(canonical_address(input).unwrap().as_str(), want, "{input}");
        }
        for bad in [
            "",
            "01.2.3.4",
            "1.2.3",
            "256.1.1.1",
            "a_b.com",
            "-a.com",
            "[1.2.3.4]",
            "a..b",
            "x y",
            &"a".repeat(64),
        ] {
            assert_eq!(
                canonical_address(bad).unwrap_err().external_message(),
                format!("Invalid host address '{bad}'."),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn policy() {
        let a = |s: &str| HostAddress::from_trusted(s);
        let open = AddressPolicy::default();
        assert!(open.allows(&a("192.168.1.1")));
        let p = AddressPolicy::parse(&["127.0.0.0/8".into(), "::1/128".into(), ".lab.test".into()]).unwrap();
        assert!(p.allows(&a("127.0.0.9")));
        assert!(p.allows(&a("::1")));
        assert!(p.allows(&a("a.lab.test")));
        assert!(!p.allows(&a("192.168.100.50")));
        assert!(!p.allows(&a("lab.test.evil.com")));
        assert!(!p.allows(&a("fe80::1")));
        assert!(AddressPolicy::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(AddressPolicy::parse(&["nonsense".into()]).is_err());
    }
}
