//! A connection's two sockets as its machine sees them: bytes in and out, a
//! connect that completes later, a half-close, and the descriptor the loop
//! watches. `TcpStream` in the daemon; the unit tests script one (`fake`), so
//! the machine runs, byte by byte, without sockets.

use mio::net::TcpStream;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Where a non-blocking connect stands.
pub enum Connecting {
    Pending,
    Connected,
    Failed(String),
}

pub trait Socket: io::Read + io::Write + Sized {
    /// Start connecting to 127.0.0.1:`port`; it completes later (`connecting`).
    fn connect(port: u16) -> io::Result<Self>;
    fn connecting(&self) -> Connecting;
    fn shutdown_write(&self);
    /// The descriptor the loop watches (and `splice` moves bytes through).
    fn fd(&self) -> RawFd;
}

impl Socket for TcpStream {
    fn connect(port: u16) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// On a writable event: `take_error`, then `peer_addr` (`NotConnected`: still
    /// connecting).
    fn connecting(&self) -> Connecting {
        match self.take_error() {
            Ok(Some(e)) | Err(e) => return Connecting::Failed(refusal(&e)),
            Ok(None) => {}
        }
        match self.peer_addr() {
            Ok(_) => Connecting::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Connecting::Pending,
            Err(e) => Connecting::Failed(refusal(&e)),
        }
    }

    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// Why a connect failed, as a 502 or 503 body says it.
pub fn refusal(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => crate::error::describe_io(e),
    }
}

/// A scripted socket: the test puts bytes in (`feed`), reads what the machine
/// wrote (`sent`), and chooses how much one read hands out (`chunk`) and how
/// much one write takes (`room`).
#[cfg(test)]
pub mod fake {
    use super::{Connecting, Socket};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io;
    use std::os::fd::RawFd;
    use std::rc::Rc;

    #[derive(Default)]
    pub struct Wire {
        pub incoming: VecDeque<u8>,
        /// The peer closed its side: reads end once `incoming` is empty.
        pub eof: bool,
        pub sent: Vec<u8>,
        /// At most this many bytes per read (a socket may hand out less than waits).
        pub chunk: Option<usize>,
        /// Bytes writes take before they would block; None: any number.
        pub room: Option<usize>,
        pub refused: bool,
        pub pending: bool,
        pub shut: bool,
        pub reads: usize,
    }

    /// One end of a scripted connection; clones share it.
    #[derive(Clone, Default)]
    pub struct Fake(pub Rc<RefCell<Wire>>);

    impl Fake {
        pub fn feed(&self, bytes: &[u8]) {
            self.0.borrow_mut().incoming.extend(bytes);
        }
        pub fn close(&self) {
            self.0.borrow_mut().eof = true;
        }
        pub fn sent(&self) -> String {
            String::from_utf8_lossy(&self.0.borrow().sent).into_owned()
        }
        pub fn take_sent(&self) -> String {
            String::from_utf8_lossy(&std::mem::take(&mut self.0.borrow_mut().sent)).into_owned()
        }
    }

    thread_local! {
        /// What the next connects find, in order, and the ports they asked for.
        pub static DIALS: RefCell<(VecDeque<Fake>, Vec<u16>)> = RefCell::default();
    }

    /// Forget the connects of an earlier test on this thread.
    pub fn reset() {
        DIALS.with(|d| *d.borrow_mut() = Default::default());
    }

    /// The backend the next connect reaches (`refused` in it: refused).
    pub fn expect_dial(backend: &Fake) {
        DIALS.with(|d| d.borrow_mut().0.push_back(backend.clone()));
    }

    /// The ports connected to so far.
    pub fn dialled() -> Vec<u16> {
        DIALS.with(|d| d.borrow().1.clone())
    }

    impl io::Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut w = self.0.borrow_mut();
            w.reads += 1;
            if w.incoming.is_empty() {
                return if w.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf
                .len()
                .min(w.incoming.len())
                .min(w.chunk.unwrap_or(usize::MAX));
            for (slot, byte) in buf.iter_mut().zip(w.incoming.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl io::Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut w = self.0.borrow_mut();
            let n = buf.len().min(w.room.unwrap_or(usize::MAX));
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(room) = w.room.as_mut() {
                *room -= n;
            }
            w.sent.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Fake {
        fn connect(port: u16) -> io::Result<Fake> {
            let next = DIALS.with(|d| {
                let mut d = d.borrow_mut();
                d.1.push(port);
                d.0.pop_front()
            });
            match next {
                Some(f) if f.0.borrow().refused && !f.0.borrow().pending => {
                    Err(io::ErrorKind::ConnectionRefused.into())
                }
                Some(f) => Ok(f),
                None => Err(io::ErrorKind::ConnectionRefused.into()),
            }
        }
        fn connecting(&self) -> Connecting {
            let w = self.0.borrow();
            match (w.pending, w.refused) {
                (true, _) => Connecting::Pending,
                (false, true) => Connecting::Failed("connection refused".into()),
                (false, false) => Connecting::Connected,
            }
        }
        fn shutdown_write(&self) {
            self.0.borrow_mut().shut = true;
        }
        fn fd(&self) -> RawFd {
            -1
        }
    }
}
