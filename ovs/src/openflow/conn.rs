//! A minimal binary OpenFlow 1.4 connection for reads: hello/version negotiation, echo,
//! barrier, and the cookie-filtered flow-stats multipart dump (only cookies are decoded). The
//! firewall's reads go through it (no process per read, no text to parse); writes stay
//! `ovs-ofctl --bundle` (see [`super::OfctlBridge`]).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// OpenFlow 1.4's wire version.
pub const OFP14: u8 = 0x05;
const HELLO: u8 = 0;
const ERROR: u8 = 1;
const ECHO_REQUEST: u8 = 2;
const ECHO_REPLY: u8 = 3;
const MULTIPART_REQUEST: u8 = 18;
const MULTIPART_REPLY: u8 = 19;
const BARRIER_REQUEST: u8 = 20;
const BARRIER_REPLY: u8 = 21;
const OFPMP_FLOW: u16 = 1;
const OFPMPF_REPLY_MORE: u16 = 1;

/// What went wrong on an OpenFlow connection; each variant names the socket.
#[derive(Debug, thiserror::Error)]
pub enum OfError {
    /// Connecting, reading or writing failed (ovs-vswitchd gone, socket missing).
    #[error("OpenFlow socket {socket}: {source}")]
    Io {
        /// The management socket.
        socket: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The switch speaks no version we can use.
    #[error(
        "OpenFlow socket {socket}: switch offers version {offered:#x}, OpenFlow 1.4 (0x05) needed"
    )]
    Version {
        /// The management socket.
        socket: String,
        /// The switch's hello version.
        offered: u8,
    },
    /// The switch answered with an OpenFlow error message.
    #[error("OpenFlow socket {socket}: error type {etype} code {code}")]
    Switch {
        /// The management socket.
        socket: String,
        /// `ofp_error_msg.type`.
        etype: u16,
        /// `ofp_error_msg.code`.
        code: u16,
    },
    /// A message the protocol does not allow here.
    #[error("OpenFlow socket {socket}: {reason}")]
    Protocol {
        /// The management socket.
        socket: String,
        /// What was wrong.
        reason: String,
    },
}

/// One OpenFlow 1.4 connection to a bridge's management socket.
#[derive(Debug)]
pub struct OfConn {
    stream: UnixStream,
    socket: PathBuf,
    xid: u32,
}

fn header(t: u8, len: usize, xid: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.push(OFP14);
    m.push(t);
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.extend_from_slice(&xid.to_be_bytes());
    m
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

impl OfConn {
    /// Connects and negotiates OpenFlow 1.4 (both sides' hellos; the lower version wins).
    pub fn connect(socket: &Path, timeout: Duration) -> Result<OfConn, OfError> {
        let io = |source| OfError::Io {
            socket: socket.display().to_string(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut c = OfConn {
            stream,
            socket: socket.to_path_buf(),
            xid: 0,
        };
        let xid = c.next_xid();
        c.send(&header(HELLO, 8, xid))?;
        let (version, t, _, _) = c.recv()?;
        if t != HELLO {
            return Err(c.protocol(format!("expected hello, got type {t}")));
        }
        if version < OFP14 {
            return Err(OfError::Version {
                socket: socket.display().to_string(),
                offered: version,
            });
        }
        Ok(c)
    }

    fn next_xid(&mut self) -> u32 {
        self.xid = self.xid.wrapping_add(1);
        self.xid
    }

    fn io(&self, source: std::io::Error) -> OfError {
        OfError::Io {
            socket: self.socket.display().to_string(),
            source,
        }
    }

    fn protocol(&self, reason: String) -> OfError {
        OfError::Protocol {
            socket: self.socket.display().to_string(),
            reason,
        }
    }

    fn send(&mut self, m: &[u8]) -> Result<(), OfError> {
        self.stream.write_all(m).map_err(|e| self.io(e))
    }

    /// The next message: (version, type, xid, body after the 8-byte header). Echo requests from
    /// the switch are answered here.
    fn recv(&mut self) -> Result<(u8, u8, u32, Vec<u8>), OfError> {
        loop {
            let mut h = [0u8; 8];
            self.stream.read_exact(&mut h).map_err(|e| self.io(e))?;
            let len = usize::from(u16_at(&h, 2));
            if len < 8 {
                return Err(self.protocol(format!("message length {len}")));
            }
            let xid = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            let mut body = vec![0u8; len - 8];
            self.stream.read_exact(&mut body).map_err(|e| self.io(e))?;
            if h[1] == ECHO_REQUEST {
                let mut r = header(ECHO_REPLY, len, xid);
                r.extend_from_slice(&body);
                self.send(&r)?;
                continue;
            }
            return Ok((h[0], h[1], xid, body));
        }
    }

    /// The reply of type `want` to request `xid`; an error message for it becomes an error,
    /// anything unsolicited (port status, ...) is skipped.
    fn reply(&mut self, xid: u32, want: u8) -> Result<Vec<u8>, OfError> {
        loop {
            let (_, t, rx, body) = self.recv()?;
            if rx != xid {
                continue;
            }
            if t == ERROR && body.len() >= 4 {
                return Err(OfError::Switch {
                    socket: self.socket.display().to_string(),
                    etype: u16_at(&body, 0),
                    code: u16_at(&body, 2),
                });
            }
            if t == want {
                return Ok(body);
            }
        }
    }

    /// Echo round trip (liveness).
    pub fn echo(&mut self) -> Result<(), OfError> {
        let xid = self.next_xid();
        self.send(&header(ECHO_REQUEST, 8, xid))?;
        self.reply(xid, ECHO_REPLY).map(|_| ())
    }

    /// Barrier: every message sent before has been processed.
    pub fn barrier(&mut self) -> Result<(), OfError> {
        let xid = self.next_xid();
        self.send(&header(BARRIER_REQUEST, 8, xid))?;
        self.reply(xid, BARRIER_REPLY).map(|_| ())
    }

    /// Cookies of every flow (all tables) whose cookie matches `cookie` under `mask`: a flow
    /// stats multipart request; the switch filters, only cookies are decoded from the replies.
    pub fn flow_cookies(&mut self, cookie: u64, mask: u64) -> Result<Vec<u64>, OfError> {
        let xid = self.next_xid();
        let len = 8 + 8 + 32 + 8;
        let mut m = header(MULTIPART_REQUEST, len, xid);
        m.extend_from_slice(&OFPMP_FLOW.to_be_bytes());
        m.extend_from_slice(&[0; 6]); // flags, pad
        m.push(0xff); // all tables
        m.extend_from_slice(&[0; 3]);
        m.extend_from_slice(&u32::MAX.to_be_bytes()); // out_port ANY
        m.extend_from_slice(&u32::MAX.to_be_bytes()); // out_group ANY
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&mask.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 4, 0, 0, 0, 0]); // empty OXM match, padded
        self.send(&m)?;
        let mut out = Vec::new();
        loop {
            let body = self.reply(xid, MULTIPART_REPLY)?;
            if body.len() < 8 || u16_at(&body, 0) != OFPMP_FLOW {
                return Err(self.protocol("short or foreign multipart reply".into()));
            }
            let more = u16_at(&body, 2) & OFPMPF_REPLY_MORE != 0;
            let mut i = 8;
            while i + 32 <= body.len() {
                let elen = usize::from(u16_at(&body, i));
                if elen < 32 || i + elen > body.len() {
                    return Err(self.protocol(format!("flow stats entry of length {elen}")));
                }
                let c: [u8; 8] = body[i + 24..i + 32].try_into().expect("8 bytes");
                out.push(u64::from_be_bytes(c));
                i += elen;
            }
            if !more {
                return Ok(out);
            }
        }
    }
}
