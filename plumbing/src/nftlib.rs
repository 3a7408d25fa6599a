//! libnftables in-process: the same library (and the same JSON) the `nft` binary is a thin
//! wrapper of, called on a thread inside the router's namespace instead of forking one `nft`
//! per namespace and pass (issue 22: a no-op pass over 100 routers spent most of its 364 ms
//! starting `nft -j list` processes).
//!
//! The library is opened with `dlopen("libnftables.so.1")` at first use rather than linked:
//! every host with the `nft` binary has it (the binary depends on it), no `-dev` package or
//! build-time link is needed, and a host without it falls back to running `nft`. The
//! context is made on the namespace thread, so the netlink socket libnftables opens belongs
//! to that namespace. Calls are serialised: libnftables' one-time global initialisation in
//! `nft_ctx_new` is not thread-safe.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// `NFT_CTX_OUTPUT_JSON` (libnftables.h): JSON output, and JSON input tried first.
const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint) -> c_uint;
type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The entry points used, resolved once.
struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    output_set_flags: SetFlags,
    buffer_output: Buffer,
    buffer_error: Buffer,
    get_output: GetBuffer,
    get_error: GetBuffer,
    run_cmd: RunCmd,
    /// Serialises every use (see the module doc).
    lock: Mutex<()>,
}

static LIB: OnceLock<Option<Lib>> = OnceLock::new();

fn load() -> Option<Lib> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is never closed, so the
    // resolved functions stay valid for the life of the process. The signatures are those of
    // libnftables.h (stable since nftables 0.9).
    unsafe {
        let h = libc::dlopen(
            c"libnftables.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        if h.is_null() {
            tracing::info!("libnftables.so.1 not found; running the nft binary instead");
            return None;
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(h, name.as_ptr());
            (!p.is_null()).then_some(p)
        };
        let lib = Lib {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
            output_set_flags: std::mem::transmute::<*mut c_void, SetFlags>(sym(
                c"nft_ctx_output_set_flags",
            )?),
            buffer_output: std::mem::transmute::<*mut c_void, Buffer>(sym(
                c"nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, Buffer>(sym(c"nft_ctx_buffer_error")?),
            get_output: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                c"nft_ctx_get_output_buffer",
            )?),
            get_error: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                c"nft_ctx_get_error_buffer",
            )?),
            run_cmd: std::mem::transmute::<*mut c_void, RunCmd>(sym(c"nft_run_cmd_from_buffer")?),
            lock: Mutex::new(()),
        };
        Some(lib)
    }
}

/// Set: run the `nft` binary even where the library loads (the peer in benchmarks, and the
/// fallback path in tests).
static FORCE_BINARY: AtomicBool = AtomicBool::new(false);

/// Makes [`available`] answer false from now on (`true`), or the truth again (`false`): the
/// `nft` binary is then used, so benchmarks and tests can compare both paths in one run.
pub fn force_binary(yes: bool) {
    FORCE_BINARY.store(yes, Ordering::Relaxed);
}

/// Whether libnftables is used (else callers run the `nft` binary).
pub fn available() -> bool {
    !FORCE_BINARY.load(Ordering::Relaxed) && LIB.get_or_init(load).is_some()
}

/// Runs `cmd` (nft syntax or a JSON document) with JSON output in the calling thread's
/// network namespace, as `nft -j -f -` would there: `Ok(stdout)` or `Err(stderr)`.
/// `None` when the library is not available.
pub fn run(cmd: &str) -> Option<std::result::Result<String, String>> {
    let lib = LIB.get_or_init(load).as_ref()?;
    let Ok(cmd) = CString::new(cmd) else {
        return Some(Err("command contains NUL".into()));
    };
    let _guard = lib.lock.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: the context is created, used and freed here, on this thread, under the lock;
    // the buffers it returns are copied before it is freed.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            return Some(Err("nft_ctx_new failed".into()));
        }
        (lib.output_set_flags)(ctx, OUTPUT_JSON);
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        let rc = (lib.run_cmd)(ctx, cmd.as_ptr());
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let out = text((lib.get_output)(ctx));
        let err = text((lib.get_error)(ctx));
        (lib.ctx_free)(ctx);
        Some(if rc == 0 {
            Ok(out)
        } else {
            Err(format!("exit {rc}: {}", err.trim()))
        })
    }
}
