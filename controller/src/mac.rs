//! MAC addresses for ports: Neutron's `fa:16:3e` prefix plus three random bytes.
//! Uniqueness is a database constraint; a collision makes the store draw again.

/// Neutron's default base MAC prefix.
pub const PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

/// A random MAC under [`PREFIX`], lower-case colon form.
pub fn random() -> String {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    format_mac([PREFIX[0], PREFIX[1], PREFIX[2], b[0], b[1], b[2]])
}

/// Format six bytes as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(b: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// Parse a user-given MAC (colon or dash separated) as Neutron validates one: any MAC but
/// all-zero and broadcast. A multicast one is accepted (Neutron does, and clients' tests set
/// one); no NIC can take it, so the planner leaves such a port out of the data plane and a
/// router interface refuses it ([`is_unicast`]).
pub fn parse(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        b[i] = u8::from_str_radix(p, 16).ok()?;
    }
    if b == [0; 6] || b == [0xff; 6] {
        return None;
    }
    Some(format_mac(b))
}

/// Whether a (parsed) MAC is a unicast one: the planner's rule, which keeps the other kind
/// out of the data plane.
pub fn is_unicast(mac: &str) -> bool {
    planner::is_unicast_mac(mac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_has_prefix_and_parses_back() {
        let m = super::random();
        assert!(m.starts_with("fa:16:3e:"), "{m}");
        assert_eq!(super::parse(&m).as_deref(), Some(m.as_str()));
        assert_ne!(super::random(), super::random());
    }

    #[test]
    fn parse_refuses_garbage_zero_and_broadcast_and_tells_multicast() {
        assert_eq!(
            super::parse("FA-16-3E-00-00-01").as_deref(),
            Some("fa:16:3e:00:00:01")
        );
        for bad in [
            "",
            "fa:16:3e:00:00",
            "zz:16:3e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "fa:16:3e:0:0:1",
        ] {
            assert!(super::parse(bad).is_none(), "{bad}");
        }
        let m = super::parse("11:22:33:44:55:66").expect("Neutron accepts a multicast MAC");
        assert!(!super::is_unicast(&m));
        assert!(super::is_unicast("fa:16:3e:00:00:01"));
    }
}
