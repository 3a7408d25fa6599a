//! A small typed rtnetlink socket (the netavark shape): requests are built from
//! `netlink-packet-route` types, acks and dumps are checked strictly, and many requests can be
//! pipelined on one socket without waiting for each ack. The rest of the crate never builds raw
//! messages.

use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};
use crate::netns::{run_in, Netns};

/// How many requests are sent in one datagram and acknowledged before the next batch: the
/// kernel handles a datagram synchronously inside `send`, so the acks of one batch must fit in
/// the receive buffer.
const BATCH: usize = 128;
const RECV_BUF: usize = 256 * 1024;
/// A netlink answer that takes longer than this is reported as an error, not waited for.
const RECV_TIMEOUT_SECS: libc::time_t = 30;

/// An rtnetlink socket bound to one network namespace. All link, address and route operations
/// are methods on it (see [`crate::link`], [`crate::addr`], [`crate::route`]). The socket is
/// created on a dedicated thread inside the namespace and keeps working there from any thread,
/// so a `Handle` can be used from async code via `spawn_blocking`.
pub struct Handle {
    sock: Socket,
    ns: Netns,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("ns", &self.ns).finish()
    }
}

/// One request of a pipelined batch: the message, its `NLM_F_*` flags beyond REQUEST|ACK, and
/// a description for errors.
pub(crate) struct Request {
    pub msg: RouteNetlinkMessage,
    pub flags: u16,
    pub object: String,
}

impl Handle {
    /// Opens an rtnetlink socket inside `ns`.
    pub fn new(ns: &Netns) -> Result<Handle> {
        let sock = run_in(ns, || -> io::Result<Socket> {
            let mut s = Socket::new(NETLINK_ROUTE)?;
            s.bind_auto()?;
            s.connect(&SocketAddr::new(0, 0))?;
            // Acks without the echoed request: smaller, so more fit in the receive buffer.
            s.set_cap_ack(true)?;
            Ok(s)
        })?
        .map_err(|source| Error::Netlink {
            op: "open socket",
            object: "rtnetlink".into(),
            ns: ns.display_name().to_string(),
            source,
        })?;
        // A larger receive buffer for big dumps and batches; root may exceed rmem_max.
        let size: libc::c_int = 4 * 1024 * 1024;
        // SAFETY: valid fd and option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // Never hang a reconcile pass on a kernel that does not answer.
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: valid fd and option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Handle {
            sock,
            ns: ns.clone(),
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The namespace this handle works in.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    fn nl_err(&self, op: &'static str, object: impl Into<String>, source: io::Error) -> Error {
        Error::Netlink {
            op,
            object: object.into(),
            ns: self.ns.display_name().to_string(),
            source,
        }
    }

    fn decode_err(&self, op: &'static str, detail: impl ToString) -> Error {
        Error::Decode {
            op,
            ns: self.ns.display_name().to_string(),
            detail: detail.to_string(),
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn serialize_into(out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16, seq: u32) {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let start = out.len();
        out.resize(start + nl.buffer_len(), 0);
        nl.serialize(&mut out[start..]);
    }

    /// Receives one datagram into the handle's buffer; returns its length.
    fn recv(&mut self, op: &'static str) -> Result<usize> {
        loop {
            let mut slice: &mut [u8] = &mut self.buf[..];
            match self.sock.recv(&mut slice, 0) {
                Ok(n) => return Ok(n.min(RECV_BUF)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.nl_err(op, "receive", e)),
            }
        }
    }

    /// Splits a datagram into netlink messages (offset, length).
    fn split(&self, len: usize, op: &'static str) -> Result<Vec<(usize, usize)>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 16 <= len {
            let b = NetlinkBuffer::new_checked(&self.buf[off..len])
                .map_err(|e| self.decode_err(op, e))?;
            let l = b.length() as usize;
            if l < 16 {
                return Err(self.decode_err(op, "netlink message shorter than its header"));
            }
            out.push((off, l));
            off += (l + 3) & !3;
        }
        Ok(out)
    }

    /// Sends one request that expects an ack (or an error).
    pub(crate) fn request(
        &mut self,
        op: &'static str,
        object: impl Into<String>,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<()> {
        let object = object.into();
        let mut errs = self.pipeline(
            op,
            vec![Request {
                msg,
                flags,
                object: object.clone(),
            }],
        )?;
        match errs.pop() {
            None => Ok(()),
            Some((_, e)) => Err(e),
        }
    }

    /// Sends many requests, [`BATCH`] per datagram, and collects the acks. Returns the failed
    /// ones (index in `reqs`, error); socket-level failures are returned as `Err`.
    pub(crate) fn pipeline(
        &mut self,
        op: &'static str,
        reqs: Vec<Request>,
    ) -> Result<Vec<(usize, Error)>> {
        let mut failures = Vec::new();
        let mut out = Vec::with_capacity(BATCH * 96);
        let mut reqs = reqs.into_iter().enumerate().peekable();
        while reqs.peek().is_some() {
            out.clear();
            // seq -> (index, object)
            let mut pending: Vec<(u32, usize, String)> = Vec::with_capacity(BATCH);
            for (i, r) in reqs.by_ref().take(BATCH) {
                let seq = self.next_seq();
                Self::serialize_into(&mut out, r.msg, NLM_F_REQUEST | NLM_F_ACK | r.flags, seq);
                pending.push((seq, i, r.object));
            }
            if let Err(e) = self.sock.send(&out, 0) {
                return Err(self.nl_err(op, "send batch", e));
            }
            let mut acked = 0;
            while acked < pending.len() {
                let len = self.recv(op)?;
                for (off, l) in self.split(len, op)? {
                    let msg =
                        NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + l])
                            .map_err(|e| self.decode_err(op, e))?;
                    let seq = msg.header.sequence_number;
                    let Some(pos) = pending.iter().position(|p| p.0 == seq) else {
                        continue; // a stale reply from an earlier, failed exchange
                    };
                    if let NetlinkPayload::Error(err) = msg.payload {
                        acked += 1;
                        if err.code.is_some() {
                            let (_, idx, object) = &pending[pos];
                            failures.push((*idx, self.nl_err(op, object.clone(), err.to_io())));
                        }
                    }
                }
            }
        }
        Ok(failures)
    }

    /// Sends one get request (no dump) and returns the answer; `Ok(None)` when the kernel says
    /// the object does not exist (`ENODEV`, `ENOENT`, `ESRCH`).
    pub(crate) fn get(
        &mut self,
        op: &'static str,
        object: &str,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        Self::serialize_into(&mut out, msg, NLM_F_REQUEST, seq);
        if let Err(e) = self.sock.send(&out, 0) {
            return Err(self.nl_err(op, object.to_string(), e));
        }
        loop {
            let len = self.recv(op)?;
            for (off, l) in self.split(len, op)? {
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + l])
                        .map_err(|e| self.decode_err(op, e))?;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => return Ok(Some(m)),
                    NetlinkPayload::Error(e) => match e.code.map(|c| -c.get()) {
                        Some(libc::ENODEV | libc::ENOENT | libc::ESRCH) => return Ok(None),
                        Some(_) => return Err(self.nl_err(op, object.to_string(), e.to_io())),
                        None => return Ok(None),
                    },
                    _ => {}
                }
            }
        }
    }

    /// Dumps (NLM_F_DUMP) and returns every message up to NLMSG_DONE; a dump the kernel marks
    /// as interrupted (the table changed meanwhile) is retried.
    pub(crate) fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.dump_once(op, msg.clone())? {
                Some(r) => return Ok(r),
                None if tries < 5 => continue,
                None => {
                    return Err(self.nl_err(
                        op,
                        "dump",
                        io::Error::new(io::ErrorKind::Interrupted, "dump interrupted 5 times"),
                    ))
                }
            }
        }
    }

    fn dump_once(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<Vec<RouteNetlinkMessage>>> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        Self::serialize_into(&mut out, msg, NLM_F_REQUEST | NLM_F_DUMP, seq);
        if let Err(e) = self.sock.send(&out, 0) {
            return Err(self.nl_err(op, "send dump request", e));
        }
        let mut result = Vec::new();
        let mut interrupted = false;
        loop {
            let len = self.recv(op)?;
            for (off, l) in self.split(len, op)? {
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + l])
                        .map_err(|e| self.decode_err(op, e))?;
                if msg.header.sequence_number != seq {
                    continue;
                }
                if msg.header.flags & netlink_packet_core::NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) if interrupted => return Ok(None),
                    NetlinkPayload::Done(_) => return Ok(Some(result)),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(self.nl_err(op, "dump", e.to_io()))
                    }
                    NetlinkPayload::InnerMessage(m) => result.push(m),
                    _ => {}
                }
            }
        }
    }
}
