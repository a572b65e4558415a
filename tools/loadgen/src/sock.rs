//! The few socket calls std does not offer: a socket bound before it
//! connects, a connect with a timeout on such a socket, SO_LINGER, and a
//! listener with a chosen backlog, through `socket2`. The only `unsafe` of
//! the crate: IP_BIND_ADDRESS_NO_PORT and poll(2), which it does not offer.

use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: libc::c_int = 4096;

/// A TCP socket of the family of `addr`, close-on-exec, and non-blocking
/// if asked.
fn socket(addr: &SocketAddr, nonblock: bool) -> io::Result<Socket> {
    let ty = if nonblock {
        Type::STREAM.nonblocking()
    } else {
        Type::STREAM
    };
    Socket::new(Domain::for_address(*addr), ty, None)
}

/// Binds `s` to `ip` with port 0, leaving the port to be chosen at
/// connect time (IP_BIND_ADDRESS_NO_PORT), so one source address does
/// not run out of ports faster than with an unbound socket.
fn bind_source(s: &Socket, ip: IpAddr) -> io::Result<()> {
    let one: libc::c_int = 1;
    // Best effort: kernels before 4.2 lack it, and binding still works.
    // SAFETY: plain setsockopt(2) on a descriptor `s` keeps open; `one` is a
    // live c_int and the length given is its size. socket2 has no call for
    // this option, nor a generic setsockopt.
    let _ = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    s.bind(&SockAddr::from(SocketAddr::new(ip, 0)))
}

/// Checks that `ip` can be bound as a source address (an address of this
/// machine, of the family of `to`).
pub fn check_source(ip: IpAddr, to: &SocketAddr) -> io::Result<()> {
    bind_source(&socket(to, false)?, ip)
}

/// Opens a TCP connection to `to`, from `source` if given, giving up
/// after `timeout` with an error of kind `TimedOut`. The stream returned
/// is non-blocking.
pub fn connect(
    to: &SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = socket(to, true)?;
    if let Some(ip) = source {
        bind_source(&s, ip)?;
    }
    if let Err(e) = s.connect(&SockAddr::from(*to)) {
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        wait_connected(&s, timeout)?;
    }
    Ok(s.into())
}

/// Waits for a non-blocking connect on `s` to finish. socket2's
/// `connect_timeout` would do, but it makes the socket blocking to wait and
/// then it has to be made non-blocking again: five or six fcntl(2) more per
/// connection, which cost about 15% of the rate one thread reaches on loopback.
fn wait_connected(s: &Socket, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        let ms = left.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: pfd is one live pollfd. socket2 has no poll(2).
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue; // the deadline check above ends it
        }
        return match s.take_error()? {
            None => Ok(()),
            Some(e) => Err(e),
        };
    }
}

/// Makes closing `s` send RST at once instead of FIN (SO_LINGER on, 0 s):
/// no side of the connection is left in TIME_WAIT.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    SockRef::from(s).set_linger(Some(Duration::ZERO))
}

/// A blocking listener on `addr` with SO_REUSEADDR and a backlog of
/// [`BACKLOG`] (std's is smaller; a full queue drops SYNs, which would
/// show as client timeouts rather than as the rate being measured).
pub fn listen(addr: &SocketAddr) -> io::Result<TcpListener> {
    let s = socket(addr, false)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(*addr))?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn refused_connect_reports_errno() {
        let l = listen(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let at = l.local_addr().unwrap();
        drop(l);
        let e = connect(&at, None, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn listen_connect_and_local_addr() {
        let l = listen(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let at = l.local_addr().unwrap();
        assert_ne!(at.port(), 0);
        let s = connect(
            &at,
            Some("127.0.0.1".parse().unwrap()),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(s.peer_addr().unwrap(), at);
        let e = (&s).read(&mut [0]).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::WouldBlock,
            "stream is non-blocking"
        );
        set_linger_zero(&s).unwrap();
        let (_acc, from) = l.accept().unwrap();
        assert_eq!(from, s.local_addr().unwrap());
    }

    #[test]
    fn foreign_source_is_refused() {
        // 192.0.2.1 (TEST-NET-1) is not an address of this machine; only bound, never sent to.
        let e = check_source(
            "192.0.2.1".parse().unwrap(),
            &"127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL));
    }
}
