//! Named network namespaces, compatible with `ip netns`: each is a bind mount of a namespace
//! file under `/run/netns`, which is itself made a shared mount the way iproute2 does it, so
//! `ip netns exec` and crosspod see the same namespaces.
//!
//! Work inside a namespace always runs on a fresh, dedicated OS thread ([`run_in`]): `setns`
//! switches only the calling thread, and a tokio worker must never be moved to another
//! namespace. Sockets keep the namespace they were created in, so a socket created on such a
//! thread (see [`crate::Handle`]) can then be used from any thread.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A network namespace to work in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Netns {
    /// The namespace of this process (of its main thread): the root namespace in production.
    Current,
    /// A named namespace under `/run/netns`.
    Named(String),
}

impl Netns {
    /// A named namespace.
    pub fn named(name: impl Into<String>) -> Netns {
        Netns::Named(name.into())
    }

    /// The name used in logs and errors (`<current>` for [`Netns::Current`]).
    pub fn display_name(&self) -> &str {
        match self {
            Netns::Current => "<current>",
            Netns::Named(n) => n,
        }
    }

    /// Opens the namespace file, the handle `setns` and `IFLA_NET_NS_FD` take.
    pub fn open(&self) -> Result<OwnedFd> {
        let path = match self {
            Netns::Current => PathBuf::from("/proc/self/ns/net"),
            Netns::Named(n) => {
                validate_name(n)?;
                Path::new(NETNS_RUN_DIR).join(n)
            }
        };
        match File::open(&path) {
            Ok(f) => Ok(f.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NoSuchNetns {
                ns: self.display_name().to_string(),
            }),
            Err(source) => Err(Error::Netns {
                op: "open",
                ns: self.display_name().to_string(),
                source,
            }),
        }
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Checks a namespace name the way `ip netns` would accept it (a single path component).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what: "namespace",
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("is . or ..");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

fn os_err(op: &'static str, ns: &str) -> Error {
    Error::Netns {
        op,
        ns: ns.to_string(),
        source: io::Error::last_os_error(),
    }
}

fn cstr(p: &str) -> CString {
    CString::new(p).expect("paths checked for NUL")
}

/// Serialises the "make /run/netns a shared mount" step between threads of this process.
static RUN_DIR_LOCK: Mutex<()> = Mutex::new(());

/// Creates `/run/netns` and makes it a shared mount (binding it onto itself first if it is not
/// a mount point yet), as `ip netns add` does, so namespace mounts propagate to other mount
/// namespaces.
fn prepare_run_dir() -> Result<()> {
    let _guard = RUN_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(NETNS_RUN_DIR).map_err(|source| Error::Netns {
        op: "mkdir /run/netns for",
        ns: String::new(),
        source,
    })?;
    let dir = cstr(NETNS_RUN_DIR);
    let none = cstr("none");
    let mut bound = false;
    loop {
        // SAFETY: valid NUL-terminated strings; a null data pointer is allowed.
        let rc = unsafe {
            libc::mount(
                none.as_ptr(),
                dir.as_ptr(),
                none.as_ptr(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) || bound {
            return Err(Error::Netns {
                op: "make /run/netns shared for",
                ns: String::new(),
                source: err,
            });
        }
        // Not a mount point yet: bind it onto itself, then retry.
        // SAFETY: as above.
        let rc = unsafe {
            libc::mount(
                dir.as_ptr(),
                dir.as_ptr(),
                none.as_ptr(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(os_err("bind-mount /run/netns for", ""));
        }
        bound = true;
    }
}

/// Creates the named namespace. Returns `false` (and changes nothing) when it already exists.
/// Loopback is brought up, as every user of a fresh namespace wants.
pub fn create(name: &str) -> Result<bool> {
    validate_name(name)?;
    prepare_run_dir()?;
    // One creation at a time in this process, so a file another thread has just made (and not
    // yet mounted) is never taken for a stale leftover.
    let _guard = CREATE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    create_locked(name)
}

static CREATE_LOCK: Mutex<()> = Mutex::new(());

fn create_locked(name: &str) -> Result<bool> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let cpath = cstr(path.to_str().expect("utf-8 path"));
    // SAFETY: valid path; the returned fd is closed right away.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o444,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            if is_namespace_file(&path) {
                return Ok(false);
            }
            // A leftover of a creation that died before the bind mount: start over.
            tracing::warn!(
                netns = name,
                "replacing a namespace file that is not mounted"
            );
            std::fs::remove_file(&path).map_err(|source| Error::Netns {
                op: "remove the stale mount point",
                ns: name.to_string(),
                source,
            })?;
            return create_locked(name);
        }
        return Err(Error::Netns {
            op: "create the mount point",
            ns: name.to_string(),
            source: err,
        });
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };

    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            // SAFETY: unshare only affects this dedicated thread, which exits afterwards.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(os_err("unshare", name));
            }
            let src = cstr("/proc/thread-self/ns/net");
            let none = cstr("none");
            // SAFETY: valid strings.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    cpath.as_ptr(),
                    none.as_ptr(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(os_err("bind-mount", name));
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::ThreadPanicked {
                ns: name.to_string(),
            })
        })
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    tracing::debug!(netns = name, "created network namespace");
    let ns = Netns::named(name);
    let mut h = crate::Handle::new(&ns)?;
    h.link_up_unowned("lo")?;
    Ok(true)
}

/// Whether `path` is a mounted namespace file (on nsfs), not a plain leftover file.
fn is_namespace_file(path: &Path) -> bool {
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: valid path and an out-parameter of the right type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as libc::c_long == NSFS_MAGIC
}

/// Deletes the named namespace (unmounts and removes its file). Returns `false` when it did not
/// exist. Interfaces inside disappear with the last reference to the namespace.
pub fn delete(name: &str) -> Result<bool> {
    validate_name(name)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    if !path.exists() {
        return Ok(false);
    }
    let cpath = cstr(path.to_str().expect("utf-8 path"));
    // SAFETY: valid path.
    if unsafe { libc::umount2(cpath.as_ptr(), libc::MNT_DETACH) } != 0 {
        let err = io::Error::last_os_error();
        // EINVAL: not a mount point (a half-created namespace); just remove the file.
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(Error::Netns {
                op: "unmount",
                ns: name.to_string(),
                source: err,
            });
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Netns {
                op: "remove",
                ns: name.to_string(),
                source,
            })
        }
    }
    tracing::debug!(netns = name, "deleted network namespace");
    Ok(true)
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    validate_name(name).is_ok() && Path::new(NETNS_RUN_DIR).join(name).exists()
}

/// Names of all namespaces under `/run/netns`, sorted.
pub fn list() -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Netns {
                op: "list",
                ns: NETNS_RUN_DIR.to_string(),
                source,
            })
        }
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Names of the namespaces starting with `prefix` (the agent's own, on a shared machine).
pub fn list_prefixed(prefix: &str) -> Result<Vec<String>> {
    Ok(list()?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Runs `f` inside `ns` on a dedicated OS thread and returns its result. The calling thread
/// never changes namespace, so this is safe to call from async code through
/// `tokio::task::spawn_blocking` (the pool thread only waits).
pub fn run_in<F, T>(ns: &Netns, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fd = ns.open()?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            enter(&fd, ns)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::ThreadPanicked {
                ns: ns.display_name().to_string(),
            })
        })
    })
}

/// Like [`run_in`], for async callers: `f` runs on a new dedicated thread inside `ns` and the
/// returned future resolves with its result, so no executor thread blocks or changes namespace.
pub fn spawn_in<F, T>(ns: &Netns, f: F) -> impl std::future::Future<Output = Result<T>> + Send
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures_channel::oneshot::channel();
    let ns = ns.clone();
    let opened = ns.open();
    let name = ns.display_name().to_string();
    if let Ok(fd) = &opened {
        let fd = fd.try_clone();
        let spawned = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                let r = fd
                    .map_err(|source| Error::Netns {
                        op: "duplicate the handle of",
                        ns: ns.display_name().to_string(),
                        source,
                    })
                    .and_then(|fd| enter(&fd, &ns))
                    .map(|()| f());
                let _ = tx.send(r);
            });
        if let Err(source) = spawned {
            tracing::warn!(netns = %name, error = %source, "cannot spawn a namespace thread");
        }
    }
    async move {
        opened?;
        rx.await
            .unwrap_or_else(|_| Err(Error::ThreadPanicked { ns: name }))
    }
}

/// Moves the calling thread into the namespace `fd` refers to. Only for dedicated threads.
fn enter(fd: &OwnedFd, ns: &Netns) -> Result<()> {
    // SAFETY: fd is a namespace file; only the current (dedicated) thread is affected.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("setns into", ns.display_name()));
    }
    Ok(())
}

/// Runs a command inside `ns`: the child joins the namespace between fork and exec. Used for
/// `nft`, which has no stable Rust netlink binding.
pub(crate) fn command_in(ns: &Netns, program: &str) -> Result<std::process::Command> {
    use std::os::unix::process::CommandExt;
    let fd = ns.open()?;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: setns is async-signal-safe; the fd stays open in the closure until exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}
