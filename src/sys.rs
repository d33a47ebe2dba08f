//! Small safe wrappers around the libc calls that both the CLI and the daemon use.

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
