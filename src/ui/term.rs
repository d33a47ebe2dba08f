//! The terminal: raw mode and the alternate screen on the way in, and their
//! undoing on every way out (the guard's drop, a panic hook, the loop's signal
//! handling). Size through TIOCGWINSZ. The only `unsafe` of the UI is here, one
//! libc call per block.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Alternate screen, cursor hidden, no autowrap, mouse buttons and wheel in SGR form.
const ENTER: &str = "\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[?1000h\x1b[?1006h\x1b[H";
/// The reverse of `ENTER`, and default colours.
const LEAVE: &str = "\x1b[?1006l\x1b[?1000l\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l";

/// The terminal settings found on entry, for every path that restores them.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);
/// Raw mode is on; the first restore turns it off, later ones do nothing.
static ACTIVE: AtomicBool = AtomicBool::new(false);

pub fn is_tty(fd: libc::c_int) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

fn get_attr(fd: libc::c_int) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; all-zero is a valid value to overwrite.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes only into the termios we pass.
    if unsafe { libc::tcgetattr(fd, &mut t) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set_attr(fd: libc::c_int, t: &libc::termios) -> io::Result<()> {
    // SAFETY: tcsetattr reads only the termios we pass.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Columns and rows of the terminal on stdout.
pub fn size() -> (u16, u16) {
    // SAFETY: winsize is plain data; all-zero is a valid value to overwrite.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes only into the winsize we pass.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col, ws.ws_row)
    } else {
        (80, 24)
    }
}

/// Write all of `bytes` to stdout, retrying interrupted writes.
pub fn write_out(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Raw mode and the alternate screen while it lives.
pub struct Guard(());

impl Guard {
    pub fn enter() -> io::Result<Guard> {
        let saved = get_attr(libc::STDIN_FILENO)?;
        let mut raw = saved;
        // cfmakeraw: no echo, no line editing, no signals from keys, 8-bit input.
        // SAFETY: cfmakeraw edits only the termios we pass.
        unsafe { libc::cfmakeraw(&mut raw) };
        if let Ok(mut s) = SAVED.lock() {
            *s = Some(saved);
        }
        set_attr(libc::STDIN_FILENO, &raw)?;
        ACTIVE.store(true, Ordering::SeqCst);
        install_panic_hook();
        // From here on, any failure drops the guard, which restores the terminal.
        let guard = Guard(());
        write_out(ENTER.as_bytes())?;
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Put the terminal back as it was; safe to call from anywhere, any number of times.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // The terminal may be gone (SIGHUP): nothing to do about a failed write.
    let _ = write_out(LEAVE.as_bytes());
    let saved = SAVED.lock().ok().and_then(|s| *s);
    if let Some(saved) = saved {
        let _ = set_attr(libc::STDIN_FILENO, &saved);
    }
}

/// A panic (which aborts in release builds, running no destructors) restores
/// the terminal before the message is printed, so the message is readable.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Whether stdin has bytes to read now (or is at end of file).
pub fn stdin_ready() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we pass.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// Read what stdin has without blocking (stdin itself stays blocking: it shares
/// its open file with stdout and with the shell, which must not find it changed).
/// `Ok(true)` at end of file.
pub fn read_stdin(into: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    while stdin_ready() {
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Ok(true),
            n if n > 0 => into.extend_from_slice(&buf[..n as usize]),
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(false),
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(false)
}
