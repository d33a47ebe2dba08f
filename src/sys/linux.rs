//! The Linux side of `crate::sys` (its docs list the surface): small safe
//! wrappers around libc calls, and what /proc, inotify and prctl tell or do.

pub mod procinfo;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid of the process at the other end of a connected Unix socket.
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(cred.uid)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// Let `fd` survive exec, to hand it to a program we start.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own changes only its flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Take an exclusive lock on `file`, waiting for its holder (bounded by how long
/// the holder keeps it: one daemon start).
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Take an exclusive lock on `file` if nobody holds one; false if somebody does.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Wait until `file` is readable (or at EOF); false on timeout.
pub fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: poll reads and writes the one pollfd we pass.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

/// Return free heap memory to the system (glibc keeps it otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe { libc::malloc_trim(0) };
}

/// The size of a memory page in bytes (4096 when sysconf cannot tell).
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Clock ticks per second, the unit of CPU times in /proc (100 when unknown).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// A file name as the C string the `*at` calls take.
fn c_name(name: &std::ffi::OsStr) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the name contains a NUL byte"))
}

/// `open(2)` of a path with `flags` (close-on-exec added), mode 0600 if it creates.
pub fn open_raw(path: &std::path::Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = c_name(path.as_os_str())?;
    // SAFETY: open reads the NUL-terminated path we own and returns a new descriptor or -1.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)`: `name` in the directory `dir`, never resolved through `dir`'s path.
pub fn open_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: openat reads the NUL-terminated name we own; `dir` is an open descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `lstat` of `name` in the directory `dir` (a link is reported as one, not
/// followed), never resolved through `dir`'s path.
pub fn metadata_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> io::Result<std::fs::Metadata> {
    // O_PATH opens the entry itself without reading it (Linux).
    let fd = open_at(dir, name, libc::O_PATH | libc::O_NOFOLLOW)?;
    File::from(fd).metadata()
}

/// `renameat(2)` within one directory.
pub fn rename_at(
    dir: std::os::fd::BorrowedFd<'_>,
    from: &std::ffi::OsStr,
    to: &std::ffi::OsStr,
) -> io::Result<()> {
    let (from, to) = (c_name(from)?, c_name(to)?);
    let fd = dir.as_raw_fd();
    // SAFETY: renameat reads the two NUL-terminated names we own; `fd` is an open directory.
    if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unlinkat(2)` of a file in a directory.
pub fn unlink_at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: unlinkat reads the NUL-terminated name we own; `dir` is an open directory.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), or None when unlimited
/// or unknown.
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Whether an error means this process (or the system) is out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

// ---------------------------------------------------------------------------
// The daemon's process model

/// Make this process the reaper of its orphaned descendants: a grandchild whose
/// parent dies is re-parented to us instead of to init.
pub fn set_child_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The descriptor numbers this process has open (the listing's own included),
/// or None when that cannot be read.
pub fn open_descriptors() -> Option<Vec<i32>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Start time of `pid` in clock ticks since boot, from /proc/<pid>/stat.
pub fn start_ticks(pid: u32) -> Option<u64> {
    use std::io::Read;
    // One read into a fixed buffer: a stat line is a few hundred bytes.
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The raw command line of `pid` (NUL-separated words), or None if unreadable.
pub fn cmdline(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// The raw environment of `pid` (NUL-separated `KEY=value`), read up to `cap`
/// bytes; None if unreadable (gone, or another user's).
pub fn environ(pid: i32, cap: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut environ = Vec::new();
    file.take(cap).read_to_end(&mut environ).ok()?;
    Some(environ)
}

/// The command line of `pid`, as words joined by spaces, cut to 100 characters.
pub fn command_of(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut text = if words.is_empty() {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim_end()))
            .unwrap_or_default()
    } else {
        words.join(" ")
    };
    if let Some((cut, _)) = text.char_indices().nth(100) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Whether some process (zombies included) is a member of process group `pgid`
/// in session `sid`; true when that cannot be read.
pub fn group_in_session(pgid: i32, sid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // After the command name: state ppid pgrp session ...
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace().skip(2);
        let pgrp = fields.next().and_then(|f| f.parse::<i32>().ok());
        let session = fields.next().and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && session == Some(sid)
    })
}

// ---------------------------------------------------------------------------
// Output pipes

/// A bigger pipe lets a chatty child write more before the daemon must wake up:
/// fewer wake-ups and reads per byte. Pages are only allocated as data waits in
/// it, so a quiet child costs nothing. Refusals (pipe-max-size, the per-user
/// pipe quota) leave the default 64 KiB, which works too.
pub const PIPE_SIZE: libc::c_int = 1024 * 1024;

pub fn grow_pipe(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own changes only its capacity.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) >= PIPE_SIZE }
}

/// How many grown pipes the daemon may hold: a quarter of the per-user pipe
/// quota, because past that quota every new pipe of the user (a shell pipeline
/// included) is cut to one page.
pub fn big_pipe_budget() -> usize {
    let soft_pages: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let pages_per_pipe = PIPE_SIZE as usize / 4096;
    if soft_pages == 0 {
        64
    } else {
        soft_pages / 4 / pages_per_pipe
    }
}

// ---------------------------------------------------------------------------
// File watching (inotify)

/// The events that mean a file changed: create, close after writing, move,
/// delete, attribute change; never open or read.
const CHANGES: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_ATTRIB;

/// One descriptor that reports changes in the directories it watches (each
/// watch a number, `wd`); non-blocking, for the loop to poll.
pub struct DirWatch(File);

/// One change read from a `DirWatch`.
#[derive(Debug, PartialEq, Eq)]
pub enum DirEvent<'a> {
    /// The kernel's queue overflowed: events were lost.
    Overflow,
    /// `name` changed in the directory of watch `wd` (`new_dir`: a directory
    /// was created or moved in there). `name` is empty for the directory itself.
    Change {
        wd: i32,
        name: &'a [u8],
        new_dir: bool,
    },
}

impl DirWatch {
    pub fn new() -> io::Result<DirWatch> {
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is new and owned by nobody else.
        Ok(DirWatch(unsafe { File::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Watch the directory `dir` (not followed if a link) for changes of the
    /// files in it; returns its watch number (the same for a directory watched
    /// twice).
    pub fn add(&self, dir: &std::path::Path) -> io::Result<i32> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mask = CHANGES | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW | libc::IN_EXCL_UNLINK;
        // SAFETY: the path is NUL-terminated and outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Stop watch `wd`.
    pub fn remove(&self, wd: i32) {
        // SAFETY: removing a watch descriptor of our own inotify instance.
        unsafe { libc::inotify_rm_watch(self.fd(), wd) };
    }

    /// Read pending events into `buf`: how many bytes (0 when none are left),
    /// to walk with `dir_events`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        self.0.read(buf)
    }
}

/// The events in the bytes one `DirWatch::read` returned.
pub fn dir_events(buf: &[u8]) -> impl Iterator<Item = DirEvent<'_>> {
    let n = buf.len();
    let mut at = 0;
    std::iter::from_fn(move || {
        // struct inotify_event { int wd; u32 mask; u32 cookie; u32 len; char name[len]; }
        if at + 16 > n {
            return None;
        }
        let word = |i: usize| {
            let b = &buf[at + i..at + i + 4];
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        };
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let name_end = (at + 16 + len).min(n);
        let name = &buf[at + 16..name_end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        at = at + 16 + len;
        if mask & libc::IN_Q_OVERFLOW != 0 {
            return Some(DirEvent::Overflow);
        }
        let new_dir =
            mask & libc::IN_ISDIR != 0 && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0;
        Some(DirEvent::Change { wd, name, new_dir })
    })
}

/// When adding a watch on `dir` failed with `e` because the system's limit on
/// watches is reached: what to tell the user (the limit, how to raise it).
pub fn watch_limit_error(e: &io::Error, dir: &std::path::Path) -> Option<String> {
    if e.raw_os_error() != Some(libc::ENOSPC) {
        return None;
    }
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    Some(format!(
        "the inotify watch limit (fs.inotify.max_user_watches = {limit}) is reached \
         watching {}; raise it with: sysctl fs.inotify.max_user_watches=524288, \
         or narrow the tree with --watch-ignore",
        dir.display()
    ))
}

/// Turn Nagle's algorithm off on a socket. Set on a listening socket, Linux
/// hands it on to every connection accepted from it (no system call per client).
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from the pointer we pass, of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A non-blocking pipe that bytes pass through from one socket to another with
/// `splice(2)`, without being copied into user space. The user keeps it empty
/// between uses (see `proxy::conn`), so one pipe serves every connection.
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes it holds at most.
    pub capacity: usize,
}

impl SplicePipe {
    pub fn new(want: usize) -> io::Result<SplicePipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = libc::c_int::try_from(want).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ and F_GETPIPE_SZ only resize or report the pipe's
        // buffer. A refused size (over /proc/sys/fs/pipe-max-size) keeps the default.
        let size = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, want);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        let capacity = usize::try_from(size).unwrap_or(0).max(4096);
        Ok(SplicePipe {
            read,
            write,
            capacity,
        })
    }

    /// Move up to `len` bytes from the socket `from` into the pipe. Ok(0) at the
    /// socket's end of file.
    pub fn fill(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Move up to `len` bytes of the pipe to the socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }

    /// Read up to `buf.len()` bytes of the pipe into `buf` (what a socket did not take).
    pub fn read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: read writes at most buf.len() bytes into the buffer we own.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: splice moves bytes between two descriptors we hold open; the
        // null offsets mean "the current position", which sockets and pipes need.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn start_time_of_ourselves_is_readable_and_stable() {
        let me = std::process::id();
        let first = start_ticks(me);
        assert!(first.is_some());
        assert_eq!(first, start_ticks(me));
        assert_eq!(start_ticks(u32::MAX), None);
    }

    #[test]
    fn our_own_command_line_environment_and_descriptors_are_read() {
        let me = std::process::id();
        assert!(cmdline(me).is_some_and(|c| !c.is_empty()));
        assert!(cmdline(u32::MAX).is_none());
        assert!(environ(me as i32, 1 << 20).is_some());
        assert_eq!(environ(me as i32, 4).map(|e| e.len()), Some(4));
        assert!(environ(-1, 1 << 20).is_none());
        assert!(open_descriptors().is_some_and(|fds| fds.contains(&0)));
    }

    #[test]
    fn dir_events_walk_the_kernel_records() {
        // Two records as the kernel lays them out: wd, mask, cookie, len, name.
        let mut buf = Vec::new();
        let mut record = |wd: i32, mask: u32, name: &[u8], len: usize| {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(len as u32).to_ne_bytes());
            let mut padded = name.to_vec();
            padded.resize(len, 0);
            buf.extend_from_slice(&padded);
        };
        record(3, libc::IN_CREATE | libc::IN_ISDIR, b"src", 16);
        record(4, libc::IN_CLOSE_WRITE, b"main.rs", 16);
        record(-1, libc::IN_Q_OVERFLOW, b"", 0);
        let events: Vec<DirEvent<'_>> = dir_events(&buf).collect();
        assert_eq!(
            events,
            vec![
                DirEvent::Change {
                    wd: 3,
                    name: b"src",
                    new_dir: true
                },
                DirEvent::Change {
                    wd: 4,
                    name: b"main.rs",
                    new_dir: false
                },
                DirEvent::Overflow,
            ]
        );
        // Records cut short are read only up to the end of the buffer.
        assert_eq!(dir_events(&buf[..20]).count(), 1);
        assert_eq!(dir_events(&buf[..10]).count(), 0);
    }

    /// Two ends of one loopback connection.
    fn connection() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding");
        let near = TcpStream::connect(listener.local_addr().expect("address")).expect("connecting");
        let (far, _) = listener.accept().expect("accepting");
        (near, far)
    }

    #[test]
    fn a_splice_pipe_moves_socket_bytes_exactly_and_gives_back_what_was_not_sent() {
        let pipe = SplicePipe::new(256 * 1024).expect("a pipe");
        assert!(pipe.capacity >= 4096);
        let (mut writer, from) = connection();
        let (to, mut reader) = connection();
        from.set_nonblocking(true).expect("non-blocking");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let feeder = std::thread::spawn(move || writer.write_all(&sent));
        let mut got = Vec::new();
        let mut moved = 0;
        while moved < data.len() {
            // Little at a time: the far socket must take it without a reader.
            let want = (data.len() - moved).min(8192);
            let n = match pipe.fill(from.as_raw_fd(), want) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                    continue;
                }
                Err(e) => panic!("splicing in: {e}"),
            };
            assert!(n > 0, "end of file after {moved} bytes");
            // Half goes to the socket, the rest is read back out of the pipe.
            let mut out = 0;
            while out < n / 2 {
                out += pipe
                    .drain_to(to.as_raw_fd(), n / 2 - out)
                    .expect("splicing out");
            }
            let mut rest = vec![0u8; n - out];
            let mut at = 0;
            while at < rest.len() {
                let k = pipe.read_into(&mut rest[at..]).expect("reading the pipe");
                assert!(k > 0, "the pipe held less than was put in");
                at += k;
            }
            let mut sent_part = vec![0u8; out];
            reader
                .read_exact(&mut sent_part)
                .expect("reading the far socket");
            got.extend_from_slice(&sent_part);
            got.extend_from_slice(&rest);
            moved += n;
        }
        feeder.join().expect("the feeder").expect("feeding");
        assert!(got == data, "bytes were changed, lost or reordered");
        let mut byte = [0u8; 1];
        let empty = pipe.read_into(&mut byte).expect_err("an empty pipe");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        writer_closed(from, &pipe);
    }

    /// At the sending side's end of file, filling reports 0.
    fn writer_closed(from: TcpStream, pipe: &SplicePipe) {
        // The feeder's stream was dropped when its thread ended.
        let mut tries = 0;
        loop {
            match pipe.fill(from.as_raw_fd(), 10) {
                Ok(0) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 10_000 => {
                    tries += 1;
                    std::thread::yield_now();
                }
                other => panic!("expected end of file, got {other:?}"),
            }
        }
    }
}
