//! Write a ServiceHost plugin in safe Rust.
//!
//! A plugin is a type implementing [`Plugin`]; [`export_plugin!`] writes the
//! five C entry points of `servicehost.h` (`svc_abi_version`, `svc_create`,
//! `svc_loop`, `svc_stop`, `svc_plugin_version`) for it. Build the crate that
//! uses it as a `cdylib` and put the `.so` in the host's plugins directory.
//!
//! ```ignore
//! use servicehost_plugin::{export_plugin, Context, Error, Loop, Plugin};
//!
//! struct Hello { who: String, times: i64 }
//!
//! impl Plugin for Hello {
//!     fn create(context: &Context) -> Result<Self, Error> {
//!         Ok(Hello { who: context.config("who").unwrap_or_else(|| "world".into()), times: 0 })
//!     }
//!     fn run(&mut self, context: &Context) -> Result<Loop, Error> {
//!         self.times += 1;
//!         context.info(&format!("Hello, {}!", self.who));
//!         Ok(if self.times < context.config_int("times")?.unwrap_or(3) { Loop::Continue } else { Loop::Done })
//!     }
//! }
//!
//! export_plugin!(Hello, "1.0.0");
//! ```
//!
//! A panic in `create`, `run` or `stop` never unwinds into the host: it is
//! caught at the boundary, logged with its message under the service's name,
//! and turned into the error code -1 (so the host applies the restart
//! policy). Build with `panic = "unwind"` (the default); with
//! `panic = "abort"` a panic aborts the process, as in C.

use std::ffi::{c_char, CStr, CString};
use std::fmt;

/// The ABI this crate speaks (`SVC_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// Log levels of `svc_host.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

/// `svc_host` of `servicehost.h`, member for member (append-only: members
/// after `request_stop` exist when `struct_size` covers them).
#[repr(C)]
pub struct SvcHost {
    pub abi_version: u32,
    pub struct_size: u32,
    pub service_name: *const c_char,
    pub log: Option<extern "C" fn(i32, *const c_char)>,
    pub config: Option<extern "C" fn(*const c_char) -> *const c_char>,
    pub request_stop: Option<extern "C" fn()>,
    pub stop_requested: Option<extern "C" fn() -> i32>,
    pub stop_descriptor: Option<extern "C" fn() -> i32>,
    pub state_save: Option<extern "C" fn(*const u8, usize) -> i32>,
    pub state_load: Option<extern "C" fn(*mut usize) -> *const u8>,
    pub fd_keep: Option<extern "C" fn(*const c_char, i32) -> i32>,
    pub fd_load: Option<extern "C" fn(*const c_char) -> i32>,
}

/// What one loop turn asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    /// Call the loop again after the service's `interval_ms` (`SVC_CONTINUE`).
    Continue,
    /// The service finished; it stops cleanly (`SVC_DONE`).
    Done,
}

/// A failure: logged with its message, and its (negative) code recorded by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

impl Error {
    /// A failure with `code` (a code that is not negative is recorded as -1).
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Error { code: if code < 0 { code } else { -1 }, message: message.into() }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(-1, message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(-1, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

/// What the host gives a plugin: its name, logging, its sidecar's `[config]`
/// and the stop signal. Valid from `create` until `stop` returns.
pub struct Context {
    host: *const SvcHost,
}

impl Context {
    // The members are read one by one through the raw pointer, never as a
    // whole `&SvcHost`: an older host's struct is shorter (struct_size says
    // how long), and a reference would claim all of it. The host keeps the
    // struct valid until svc_stop returns, and a Context never outlives that.

    fn struct_size(&self) -> usize {
        unsafe { std::ptr::addr_of!((*self.host).struct_size).read() as usize }
    }

    fn service_name_pointer(&self) -> *const c_char {
        unsafe { std::ptr::addr_of!((*self.host).service_name).read() }
    }

    fn log_callback(&self) -> Option<extern "C" fn(i32, *const c_char)> {
        unsafe { std::ptr::addr_of!((*self.host).log).read() }
    }

    fn config_callback(&self) -> Option<extern "C" fn(*const c_char) -> *const c_char> {
        unsafe { std::ptr::addr_of!((*self.host).config).read() }
    }

    fn request_stop_callback(&self) -> Option<extern "C" fn()> {
        unsafe { std::ptr::addr_of!((*self.host).request_stop).read() }
    }

    /// A member appended later to ABI 1, read only when the running host's
    /// struct reaches past its end.
    fn appended(&self, offset: usize) -> Option<extern "C" fn() -> i32> {
        self.appended_member(offset)
    }

    /// A member of function type `F` appended later to ABI 1 (an `Option` of
    /// a function pointer has the pointer's layout, NULL being `None`).
    fn appended_member<F: Copy>(&self, offset: usize) -> Option<F> {
        if self.struct_size() < offset + std::mem::size_of::<usize>() {
            return None;
        }
        unsafe { (self.host as *const u8).add(offset).cast::<Option<F>>().read() }
    }

    /// The service's name: the file name without `lib` and `.so`.
    pub fn service_name(&self) -> String {
        let name = self.service_name_pointer();
        if name.is_null() {
            return String::new();
        }
        unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
    }

    /// Writes `message` to the host's log under the service's name.
    pub fn log(&self, level: Level, message: &str) {
        if let Some(log) = self.log_callback() {
            // An interior NUL would cut the message; it is replaced instead.
            let text = CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
            log(level as i32, text.as_ptr());
        }
    }

    pub fn debug(&self, message: &str) { self.log(Level::Debug, message) }
    pub fn info(&self, message: &str) { self.log(Level::Info, message) }
    pub fn warn(&self, message: &str) { self.log(Level::Warn, message) }
    pub fn error(&self, message: &str) { self.log(Level::Error, message) }

    /// The `[config]` value of `key` as text (dotted keys reach nested tables); `None` when absent.
    pub fn config(&self, key: &str) -> Option<String> {
        let config = self.config_callback()?;
        let key = CString::new(key).ok()?;
        let value = config(key.as_ptr());
        if value.is_null() {
            return None;
        }
        Some(unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned())
    }

    /// `key` as a whole number (TOML's `_` separators allowed): `Ok(None)`
    /// when absent, `Err` naming the key and value when invalid.
    pub fn config_int(&self, key: &str) -> Result<Option<i64>, Error> {
        self.typed(key, "a whole number", |text| text.replace('_', "").parse::<i64>().ok())
    }

    /// `key` as a number.
    pub fn config_f64(&self, key: &str) -> Result<Option<f64>, Error> {
        self.typed(key, "a number", |text| text.replace('_', "").parse::<f64>().ok())
    }

    /// `key` as `true` or `false`.
    pub fn config_bool(&self, key: &str) -> Result<Option<bool>, Error> {
        self.typed(key, "true or false", |text| match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    fn typed<T>(&self, key: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, Error> {
        match self.config(key) {
            None => Ok(None),
            Some(text) => parse(&text)
                .map(Some)
                .ok_or_else(|| Error::new(-22, format!("[config] {} = {} is not {}", key, text, expected))),
        }
    }

    /// Asks the host to stop this service once the current loop turn returns.
    pub fn request_stop(&self) {
        if let Some(request_stop) = self.request_stop_callback() {
            request_stop();
        }
    }

    /// Whether this run should end (a stop ordered, or `request_stop`); `false` on an older host.
    pub fn stop_requested(&self) -> bool {
        self.appended(std::mem::offset_of!(SvcHost, stop_requested)).is_some_and(|stop_requested| stop_requested() != 0)
    }

    /// A descriptor that becomes readable when this run should end, for a
    /// loop blocked in `poll`; the host owns it (never close it). `None` on
    /// an older host or when the host could not make one.
    pub fn stop_descriptor(&self) -> Option<i32> {
        self.appended(std::mem::offset_of!(SvcHost, stop_descriptor)).map(|stop_descriptor| stop_descriptor()).filter(|fd| *fd >= 0)
    }

    /// What this service kept when this run began (`save_state` in an
    /// earlier run, of this version or another): your own format, so begin it
    /// with a format version. `None` when nothing was, or on an older host.
    pub fn kept_state(&self) -> Option<Vec<u8>> {
        let state_load: extern "C" fn(*mut usize) -> *const u8 =
            self.appended_member(std::mem::offset_of!(SvcHost, state_load))?;
        let mut size = 0usize;
        let bytes = state_load(&mut size);
        if bytes.is_null() || size == 0 {
            return None;
        }
        Some(unsafe { std::slice::from_raw_parts(bytes, size) }.to_vec())
    }

    /// Keeps `bytes` (at most 16 MiB) for this service's next runs, in place
    /// of what was kept before: a checkpoint in `run`, and in `stop`.
    pub fn save_state(&self, bytes: &[u8]) -> Result<(), Error> {
        let state_save: extern "C" fn(*const u8, usize) -> i32 = self
            .appended_member(std::mem::offset_of!(SvcHost, state_save))
            .ok_or_else(|| Error::new(-38, "this host keeps no state"))?;
        match state_save(bytes.as_ptr(), bytes.len()) {
            0 => Ok(()),
            code => Err(Error::new(code, format!("state_save of {} bytes returned {}", bytes.len(), code))),
        }
    }

    /// Keeps a duplicate of `fd` under `name` (1 to 64 letters, digits, `.`,
    /// `_`, `-`) for this service's next runs; `fd` stays yours to close.
    /// `fd` -1 forgets `name`. At most 256 per service.
    pub fn keep_descriptor(&self, name: &str, fd: i32) -> Result<(), Error> {
        let fd_keep: extern "C" fn(*const c_char, i32) -> i32 = self
            .appended_member(std::mem::offset_of!(SvcHost, fd_keep))
            .ok_or_else(|| Error::new(-38, "this host keeps no descriptors"))?;
        let name_c = CString::new(name).map_err(|_| Error::new(-22, "a descriptor name has no NUL"))?;
        match fd_keep(name_c.as_ptr(), fd) {
            0 => Ok(()),
            code => Err(Error::new(code, format!("fd_keep(\"{}\") returned {}", name, code))),
        }
    }

    /// A new descriptor (yours to close) for what was kept under `name` when
    /// this run began; `None` when nothing was.
    pub fn kept_descriptor(&self, name: &str) -> Option<i32> {
        let fd_load: extern "C" fn(*const c_char) -> i32 = self.appended_member(std::mem::offset_of!(SvcHost, fd_load))?;
        let name_c = CString::new(name).ok()?;
        Some(fd_load(name_c.as_ptr())).filter(|fd| *fd >= 0)
    }
}

/// A service. `create` runs on every start, `run` until it returns
/// `Loop::Done` or an error or a stop comes, `stop` once after every
/// successful `create`; all on the service's own thread.
pub trait Plugin: Sized {
    fn create(context: &Context) -> Result<Self, Error>;
    fn run(&mut self, context: &Context) -> Result<Loop, Error>;
    fn stop(&mut self, _context: &Context) {}
}

/// Exports `$plugin` (a [`Plugin`] type) as the plugin's C entry points,
/// with an optional version string shown in the host's logs.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, "");
    };
    ($plugin:ty, $version:literal) => {
        #[no_mangle]
        pub extern "C" fn svc_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn svc_plugin_version() -> *const ::std::ffi::c_char {
            $crate::__export::version(concat!($version, "\0"))
        }

        /// # Safety
        /// Called by the host only, as servicehost.h says.
        #[no_mangle]
        pub unsafe extern "C" fn svc_create(host: *const $crate::SvcHost, context: *mut *mut ::std::ffi::c_void) -> i32 {
            unsafe { $crate::__export::create::<$plugin>(host, context) }
        }

        /// # Safety
        /// Called by the host only, as servicehost.h says.
        #[no_mangle]
        pub unsafe extern "C" fn svc_loop(context: *mut ::std::ffi::c_void) -> i32 {
            unsafe { $crate::__export::run::<$plugin>(context) }
        }

        /// # Safety
        /// Called by the host only, as servicehost.h says.
        #[no_mangle]
        pub unsafe extern "C" fn svc_stop(context: *mut ::std::ffi::c_void) {
            unsafe { $crate::__export::stop::<$plugin>(context) }
        }
    };
}

/// What `export_plugin!` expands to calls; not an API to use by hand.
#[doc(hidden)]
pub mod __export {
    use super::{Context, Loop, Plugin, SvcHost};
    use std::ffi::{c_char, c_void};
    use std::cell::RefCell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Once;

    thread_local! {
        /// The last panic on this thread, "message (at file:line)", for `guarded` to log.
        static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
        /// Whether this thread is inside an entry point (`guarded`).
        static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Inside an entry point, replaces the default panic hook (which writes
    /// to the host's standard error, around its log) with one that keeps the
    /// message for the service's log line; panics on the plugin's own threads
    /// go to the hook that was there before. The hook is this plugin image's
    /// own: every cdylib carries its own copy of std.
    fn quiet_panics() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !GUARDED.with(|guarded| guarded.get()) {
                    previous(info);
                    return;
                }
                let text = match info.location() {
                    Some(location) => format!("{} (at {}:{})", panic_message(info.payload()), location.file(), location.line()),
                    None => panic_message(info.payload()),
                };
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
            }));
        });
    }

    struct Created<P> {
        plugin: P,
        context: Context,
    }

    pub fn version(text: &'static str) -> *const c_char {
        if text.len() <= 1 { std::ptr::null() } else { text.as_ptr() as *const c_char }
    }

    /// The text of a caught panic.
    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_string()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a panic without a message".to_string()
        }
    }

    /// Runs `body`, turning a panic into -1 with its message logged: no panic unwinds into the host.
    fn guarded(context: &Context, step: &str, body: impl FnOnce() -> i32) -> i32 {
        quiet_panics();
        let outer = GUARDED.with(|guarded| guarded.replace(true));
        let result = catch_unwind(AssertUnwindSafe(body));
        GUARDED.with(|guarded| guarded.set(outer));
        match result {
            // Clamped: a failure code of 0 or more would read as success.
            Ok(code) if code > 1 => -1,
            Ok(code) => code,
            Err(payload) => {
                let text = LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| panic_message(payload.as_ref()));
                context.error(&format!("{} panicked: {}", step, text));
                -1
            }
        }
    }

    /// # Safety
    /// `host` is the host's `svc_host`, valid until `svc_stop`; `slot` is writable.
    pub unsafe fn create<P: Plugin>(host: *const SvcHost, slot: *mut *mut c_void) -> i32 {
        if host.is_null() || slot.is_null() {
            return -22;
        }
        let context = Context { host };
        let mut created: Option<P> = None;
        let code = guarded(&context, "svc_create", || match P::create(&context) {
            Ok(plugin) => {
                created = Some(plugin);
                0
            }
            Err(error) => {
                context.error(&format!("svc_create failed: {}", error.message));
                if error.code < 0 { error.code } else { -1 }
            }
        });
        if let Some(plugin) = created {
            let boxed = Box::new(Created { plugin, context: Context { host } });
            unsafe { *slot = Box::into_raw(boxed) as *mut c_void };
        }
        code
    }

    /// # Safety
    /// `instance` is what `create` stored, not yet stopped.
    pub unsafe fn run<P: Plugin>(instance: *mut c_void) -> i32 {
        if instance.is_null() {
            return -22;
        }
        // Created by `create` and not yet freed: the host calls svc_loop only between them.
        let created = unsafe { &mut *(instance as *mut Created<P>) };
        let Created { plugin, context } = created;
        guarded(context, "svc_loop", || match plugin.run(context) {
            Ok(Loop::Continue) => 0,
            Ok(Loop::Done) => 1,
            Err(error) => {
                context.error(&format!("svc_loop failed: {}", error.message));
                if error.code < 0 { error.code } else { -1 }
            }
        })
    }

    /// # Safety
    /// `instance` is what `create` stored; called once.
    pub unsafe fn stop<P: Plugin>(instance: *mut c_void) {
        if instance.is_null() {
            return;
        }
        // Freed here, once: the host calls svc_stop once per successful create.
        let mut created = unsafe { Box::from_raw(instance as *mut Created<P>) };
        let context = Context { host: created.context.host };
        // The plugin is dropped inside the guard too: a panic in its Drop must not unwind into the host.
        guarded(&context, "svc_stop", move || {
            let Created { plugin, context } = &mut *created;
            plugin.stop(context);
            drop(created);
            0
        });
    }
}
