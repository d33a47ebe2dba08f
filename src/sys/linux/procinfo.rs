//! What /proc says about processes and the TCP ports they listen on: pure
//! parsers for `/proc/net/tcp{,6}`, `stat` and `statm` lines, and thin readers
//! that only look at processes of our own uid. No state: the daemon decides
//! what to ask and when (never on a timer), and what the answers mean.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;

/// A TCP socket in state LISTEN, from one line of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// The owner's uid, as the kernel records it for the socket.
    pub uid: u32,
    pub inode: u64,
}

impl Listener {
    /// `127.0.0.1:3000`, `[::]:3000`.
    pub fn address(&self) -> String {
        std::net::SocketAddr::new(self.addr, self.port).to_string()
    }
}

/// State `0A` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// One line of `/proc/net/tcp` (or `tcp6`): the listening socket it describes,
/// or None for the header, another state or anything malformed.
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
///    0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41234 ...
/// ```
///
/// Addresses are hex words of 32 bits in host byte order (IPv6: four such
/// words); the port is a plain hex number.
pub fn parse_tcp_line(line: &str) -> Option<Listener> {
    let mut fields = line.split_ascii_whitespace();
    let _slot = fields.next().filter(|s| s.ends_with(':'))?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    if fields.next()? != TCP_LISTEN {
        return None;
    }
    // tx:rx queues, timer, retransmits, then uid, timeout, inode.
    let mut rest = fields.skip(3);
    let uid = rest.next()?.parse().ok()?;
    let inode = rest.nth(1)?.parse().ok()?;
    let (addr, port) = local.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(Listener {
        addr: parse_hex_addr(addr)?,
        port,
        uid,
        inode,
    })
}

/// `0100007F` → 127.0.0.1; 32 hex digits → an IPv6 address.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        // The kernel prints each 32-bit word as a number in host byte order.
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Every listening TCP socket of our network namespace, IPv4 then IPv6.
pub fn listeners() -> Vec<Listener> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // A kernel without IPv6 has no tcp6: nothing listens there.
        if let Some(text) = read_table(table) {
            found.extend(text.lines().filter_map(parse_tcp_line));
        }
    }
    found
}

/// A /proc/net table in as few reads as it takes: each read(2) of these
/// files walks the kernel's socket hash from the start (about 1.5 ms on a
/// big one), and `read_to_string` would begin with 32-byte reads.
fn read_table(path: &str) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = vec![0u8; 256 * 1024];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    bytes.truncate(len);
    String::from_utf8(bytes).ok()
}

/// The fields of `/proc/PID/stat` that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub pgid: i32,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks after boot when the process started.
    pub start_ticks: u64,
}

/// Parse a `/proc/PID/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    // After ")": state(3) ppid(4) pgrp(5) ... utime(14) stime(15) ... starttime(22).
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        pid,
        pgid: fields.get(2)?.parse().ok()?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

/// The resident pages of a `/proc/PID/statm` line (its second field).
pub fn parse_statm(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The inode of a `socket:[INODE]` link target of `/proc/PID/fd/N`.
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The pids in /proc that belong to our effective uid (others' are not read).
pub fn own_pids() -> Vec<i32> {
    let me = crate::sys::euid();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            // The directory of a process is owned by its effective uid.
            (entry.metadata().ok()?.uid() == me).then_some(pid)
        })
        .collect()
}

pub fn read_stat(pid: i32) -> Option<Stat> {
    use std::io::Read;
    // One read into a fixed buffer: a stat line is a few hundred bytes.
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    parse_stat(std::str::from_utf8(buf.get(..n)?).ok()?)
}

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm(&text)?.checked_mul(crate::sys::page_size())
}

/// The inodes of the sockets `pid` has open (empty when it is not ours or gone).
pub fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            parse_socket_link(link.to_str()?)
        })
        .collect()
}

/// Our processes grouped by process group, for the groups in `pgids` only,
/// found by walking down from `roots` (the leaders, and the daemon's other
/// children: orphans re-parented to it). Only members are descended into, so
/// the cost follows the size of the groups, not the number of processes on
/// the machine. A process that is not ours is neither read nor descended into.
pub fn group_members(roots: &[i32], pgids: &[i32]) -> HashMap<i32, Vec<Stat>> {
    let mut groups: HashMap<i32, Vec<Stat>> = HashMap::new();
    if pgids.is_empty() {
        return groups;
    }
    let me = crate::sys::euid();
    let mut queue: Vec<i32> = roots.to_vec();
    let mut seen = std::collections::HashSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let ours = std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == me);
        let Some(stat) = read_stat(pid).filter(|_| ours) else {
            continue; // gone meanwhile, or another user's (a setuid program)
        };
        if pgids.contains(&stat.pgid) {
            groups.entry(stat.pgid).or_default().push(stat);
            queue.extend(children(pid));
        }
    }
    groups
}

/// The children of `pid`, from each of its threads' `children` file.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            kids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids
}

/// What a process group uses right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub processes: u32,
    pub rss_bytes: u64,
    pub cpu_ticks: u64,
    /// The inodes of the sockets its members have open.
    pub sockets: Vec<u64>,
}

/// Sum the usage of `members` and collect their sockets.
pub fn usage(members: &[Stat]) -> Usage {
    let mut usage = Usage {
        processes: members.len() as u32,
        ..Usage::default()
    };
    for m in members {
        usage.rss_bytes += rss_bytes(m.pid).unwrap_or(0);
        usage.cpu_ticks += m.cpu_ticks;
        usage.sockets.extend(socket_inodes(m.pid));
    }
    usage
}

/// The addresses of `listeners` whose socket is one of `sockets`: sorted,
/// without repeats.
pub fn listening(sockets: &[u64], listeners: &[Listener]) -> Vec<String> {
    let mut found: Vec<String> = listeners
        .iter()
        .filter(|l| sockets.contains(&l.inode))
        .map(Listener::address)
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// A listening socket on a port, and the process that holds it when we can see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub address: String,
    pub uid: u32,
    /// Our own process that has the socket open; None for another user's socket.
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
}

/// Who listens on TCP `port` (any address), skipping sockets held by
/// `except_pgid`. Only our own processes' descriptors are read, so another
/// user's socket comes back with its uid and no pid.
pub fn holders(port: u16, except_pgid: Option<i32>) -> Vec<Holder> {
    let on_port: Vec<Listener> = listeners().into_iter().filter(|l| l.port == port).collect();
    if on_port.is_empty() {
        return Vec::new();
    }
    let me = crate::sys::euid();
    let mut owners: HashMap<u64, Stat> = HashMap::new();
    if on_port.iter().any(|l| l.uid == me) {
        for pid in own_pids() {
            let inodes = socket_inodes(pid);
            for l in on_port.iter().filter(|l| inodes.contains(&l.inode)) {
                if let Some(stat) = read_stat(pid) {
                    // The lowest pid: the parent that forked its workers.
                    let keep = owners.get(&l.inode).is_none_or(|o| o.pid > stat.pid);
                    if keep {
                        owners.insert(l.inode, stat);
                    }
                }
            }
        }
    }
    let mut found: Vec<Holder> = on_port
        .iter()
        .map(|l| {
            let owner = owners.get(&l.inode);
            Holder {
                address: l.address(),
                uid: l.uid,
                pid: owner.map(|o| o.pid),
                pgid: owner.map(|o| o.pgid),
            }
        })
        .filter(|h| except_pgid.is_none() || h.pgid != except_pgid)
        .collect();
    found.sort_by(|a, b| a.address.cmp(&b.address));
    found.dedup_by(|a, b| a.address == b.address && a.pid == b.pid);
    found
}

/// Whether a line of output says that an address was already taken.
pub fn says_address_in_use(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("eaddrinuse")
        || lower.contains("address already in use")
        || lower.contains("address in use")
}

/// The port a line such as `listen EADDRINUSE: address already in use :::3000`
/// or `bind 127.0.0.1:8080: address already in use` names: the last `:NUMBER`.
pub fn port_in_line(line: &str) -> Option<u16> {
    let bytes = line.as_bytes();
    let mut best = None;
    for (i, _) in line.match_indices(':') {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = i + 1 + digits;
        let next_is_word = bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric());
        if (1..=5).contains(&digits)
            && !next_is_word
            && let Ok(port) = line[i + 1..end].parse::<u16>()
            && port > 0
        {
            best = Some(port);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp_lines_parse_to_listeners() {
        let v4 = "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41234 1 0000000000000000 100 0 0 10 0";
        let any4 = "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0";
        let v6_any = "   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0000000000000000 100 0 0 10 0";
        let v6_lo = "   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6 1 0000000000000000 100 0 0 10 0";
        let mapped = "   2: 0000000000000000FFFF00000100007F:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7 1 0000000000000000 100 0 0 10 0";
        // The address, uid and inode of the listener, if the line is one.
        type Want = Option<(&'static str, u32, u64)>;
        let replaced = v4.replace(" 0A ", " 01 ");
        let cases: &[(&str, Want)] = &[
            (v4, Some(("127.0.0.1:3000", 1000, 41234))),
            (any4, Some(("0.0.0.0:8080", 0, 999))),
            (v6_any, Some(("[::]:3000", 1000, 5555))),
            (v6_lo, Some(("[::1]:80", 1000, 6))),
            (mapped, Some(("[::ffff:127.0.0.1]:81", 1000, 7))),
            // An established connection is not a listener.
            (&replaced, None),
            (
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
                None,
            ),
            ("", None),
            (
                "   0: 0100007F:BB8 00000000:0000 0A 0:0 0:0 0 1000 0 1",
                None,
            ),
            (
                "   0: 0100007G:0BB8 00000000:0000 0A 0:0 0:0 0 1000 0 1",
                None,
            ),
            (
                "   0: 0100007F:0BB8 00000000:0000 0A 0:0 0:0 0 1000 0",
                None,
            ),
            ("   0: 0100007F 00000000:0000 0A 0:0 0:0 0 1000 0 1", None),
        ];
        for (line, want) in cases {
            let got = parse_tcp_line(line).map(|l| (l.address(), l.uid, l.inode));
            let want = want.map(|(a, u, i)| (a.to_string(), u, i));
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "4242 (node (a) b) S 1 4240 4240 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 3 0 987654 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pid: 4242,
                pgid: 4240,
                cpu_ticks: 175,
                start_ticks: 987654
            })
        );
        for bad in [
            "",
            "4242 (x)",
            "x (y) S 1 2 3",
            "4242 (x) S 1 2 3 4 5 6 7 8 9 10",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
        assert_eq!(parse_statm("2000 512 300 10 0 400 0\n"), Some(512));
        assert_eq!(parse_statm("2000"), None);
        assert_eq!(parse_socket_link("socket:[41234]"), Some(41234));
        assert_eq!(parse_socket_link("pipe:[41234]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
    }

    #[test]
    fn our_own_process_reads_back() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).expect("our own stat");
        assert_eq!(stat.pid, me);
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(own_pids().contains(&me));
        let groups = group_members(&[me], &[stat.pgid]);
        assert!(groups[&stat.pgid].iter().any(|s| s.pid == me));
        // A child in our group is found below us; another group is not read.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let groups = group_members(&[me], &[stat.pgid]);
        let found = groups[&stat.pgid]
            .iter()
            .any(|s| s.pid == child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{groups:?}");
        assert!(group_members(&[me], &[-5]).is_empty());
    }

    #[test]
    fn a_listener_of_ours_is_found_with_its_pid() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let found = holders(port, None);
        let want = format!("127.0.0.1:{port}");
        assert!(
            found.iter().any(|h| h.address == want && h.pid == Some(me)),
            "{found:?}"
        );
        let stat = read_stat(me).unwrap();
        assert!(holders(port, Some(stat.pgid)).is_empty());
        let used = usage(&[stat]);
        assert!(
            listening(&used.sockets, &listeners()).contains(&want),
            "{used:?}"
        );
        assert_eq!(used.processes, 1);
    }

    #[test]
    fn address_in_use_messages_are_recognised_with_their_port() {
        let cases: &[(&str, bool, Option<u16>)] = &[
            (
                "Error: listen EADDRINUSE: address already in use :::3000",
                true,
                Some(3000),
            ),
            ("OSError: [Errno 98] Address already in use", true, None),
            ("bind 127.0.0.1:8080: Address in use", true, Some(8080)),
            (
                "Error: listen EADDRINUSE: address already in use 127.0.0.1:5173",
                true,
                Some(5173),
            ),
            ("listening on http://127.0.0.1:3000/", false, Some(3000)),
            ("at 12:30:45 nothing happened", false, Some(45)),
            ("port :99999 is too big", false, None),
            ("", false, None),
        ];
        for (line, in_use, port) in cases {
            assert_eq!(says_address_in_use(line), *in_use, "{line:?}");
            assert_eq!(port_in_line(line), *port, "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(line in "\\PC{0,200}") {
            let _ = parse_tcp_line(&line);
            let _ = parse_stat(&line);
            let _ = parse_statm(&line);
            let _ = parse_socket_link(&line);
            let _ = port_in_line(&line);
            let _ = says_address_in_use(&line);
        }

        #[test]
        fn tcp_like_lines_never_panic(
            addr in "[0-9A-Fa-f]{0,34}",
            port in "[0-9A-Fa-fx]{0,5}",
            tail in "[ 0-9A-F:]{0,60}",
        ) {
            let _ = parse_tcp_line(&format!("  0: {addr}:{port} 00000000:0000 0A {tail}"));
        }

        #[test]
        fn listeners_print_back_their_port(a in any::<[u8; 4]>(), port in any::<u16>(), inode in any::<u64>()) {
            let word = u32::from_ne_bytes(a);
            let line = format!("   0: {word:08X}:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 {inode} 1");
            let l = parse_tcp_line(&line).unwrap();
            prop_assert_eq!(l.addr, IpAddr::V4(Ipv4Addr::from(a)));
            prop_assert_eq!((l.port, l.inode), (port, inode));
        }
    }
}
