//! `crosspod pki`: a small CA for crosspod's control traffic. `init` makes the CA,
//! `issue --node NAME` a node's client certificate (its subject names the node: the agent
//! speaks for that node only), `issue --server NAME --san ...` the controller's server
//! certificate. ECDSA P-256 keys; files `NAME.pem` / `NAME.key` in the directory, keys 0600.
//! An operator with a PKI of their own issues the same shapes instead.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// File name of the CA certificate in a PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA key.
pub const CA_KEY: &str = "ca.key";

/// The files of one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, 0600).
    pub key: PathBuf,
}

/// Paths of `name`'s certificate and key in `dir`.
pub fn files(dir: &Path, name: &str) -> Issued {
    Issued {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn validity(params: &mut CertificateParams, years: i32) {
    let y = this_year();
    // From the start of last year: clocks of freshly booted nodes lag.
    params.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(y + years, 1, 1);
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes the CA in `dir` unless it exists (then it is kept: certificates it issued stay
/// valid). Returns whether it was made.
pub fn init(dir: &Path) -> Result<bool> {
    let ca = Issued {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    if ca.cert.exists() && ca.key.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "crosspod CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 10);
    let cert = params.self_signed(&key).context("signing the CA")?;
    write_private(&ca.key, &key.serialize_pem())?;
    std::fs::write(&ca.cert, cert.pem())
        .with_context(|| format!("writing {}", ca.cert.display()))?;
    Ok(true)
}

/// What a certificate is for.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    /// An agent: client authentication as node `name`.
    Node(&'a str),
    /// The controller: server authentication for these names and addresses.
    Server {
        /// Certificate name (file name and common name).
        name: &'a str,
        /// DNS names and IP addresses clients reach it by.
        sans: &'a [String],
    },
}

/// Issues a certificate from the CA in `dir`; an existing one of that name is replaced.
pub fn issue(dir: &Path, subject: &Subject) -> Result<Issued> {
    let ca = files(dir, "ca");
    let ca_key_pem = std::fs::read_to_string(&ca.key).with_context(|| {
        format!(
            "reading {} (run `crosspod pki init` first)",
            ca.key.display()
        )
    })?;
    let ca_cert_pem = std::fs::read_to_string(&ca.cert)
        .with_context(|| format!("reading {}", ca.cert.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing the CA key")?;
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca_cert_pem)
        .context("parsing the CA certificate")?
        .self_signed(&ca_key)
        .context("loading the CA")?;
    let (name, mut params) = match subject {
        Subject::Node(node) => {
            if node.is_empty() || node.chars().any(|c| c.is_whitespace() || c == '/') {
                bail!("node name {node:?} must be non-empty, without whitespace or '/'");
            }
            let mut p = CertificateParams::new(vec![node.to_string()])
                .with_context(|| format!("node name {node:?}"))?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            (*node, p)
        }
        Subject::Server { name, sans } => {
            if sans.is_empty() {
                bail!(
                    "a server certificate needs at least one --san (a DNS name or an IP address)"
                );
            }
            let mut p = CertificateParams::default();
            for s in sans.iter() {
                p.subject_alt_names.push(match s.parse::<IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        s.clone()
                            .try_into()
                            .with_context(|| format!("--san {s:?} is not a DNS name or an IP"))?,
                    ),
                });
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            (*name, p)
        }
    };
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params, 2);
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .with_context(|| format!("signing the certificate of {name}"))?;
    let out = files(dir, name);
    write_private(&out.key, &key.serialize_pem())?;
    std::fs::write(&out.cert, cert.pem())
        .with_context(|| format!("writing {}", out.cert.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_node_and_server_certificates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(init(dir.path()).unwrap());
        let ca_before = std::fs::read(dir.path().join(CA_CERT)).unwrap();
        assert!(!init(dir.path()).unwrap(), "an existing CA is kept");
        assert_eq!(ca_before, std::fs::read(dir.path().join(CA_CERT)).unwrap());
        let n = issue(dir.path(), &Subject::Node("node1")).unwrap();
        let text = std::fs::read_to_string(&n.cert).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&n.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let s = issue(
            dir.path(),
            &Subject::Server {
                name: "controller",
                sans: &["127.0.0.1".into(), "localhost".into()],
            },
        )
        .unwrap();
        assert!(s.cert.exists());
        assert!(issue(dir.path(), &Subject::Node("bad name")).is_err());
        assert!(issue(
            dir.path(),
            &Subject::Server {
                name: "x",
                sans: &[]
            }
        )
        .is_err());
    }
}
