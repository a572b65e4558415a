//! The few socket calls std does not offer: a socket bound before it
//! connects, a connect with a timeout on such a socket, SO_LINGER, and a
//! listener with a chosen backlog. The only `unsafe` of the crate.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: libc::c_int = 4096;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn family(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// `addr` as a `sockaddr_storage` and its length.
fn raw_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in).write(sin)
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6).write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn socket(domain: libc::c_int, nonblock: bool) -> io::Result<OwnedFd> {
    let mut ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    if nonblock {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain syscall; on success the descriptor is ours alone.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: val points to a live T of the given size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            val as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn bind(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = raw_addr(addr);
    // SAFETY: ss holds a valid sockaddr of length len.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &ss as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        )
    })
    .map(drop)
}

/// Binds `fd` to `ip` with port 0, leaving the port to be chosen at
/// connect time (IP_BIND_ADDRESS_NO_PORT), so one source address does
/// not run out of ports faster than with an unbound socket.
fn bind_source(fd: &OwnedFd, ip: IpAddr) -> io::Result<()> {
    // Best effort: kernels before 4.2 lack it, and binding still works.
    let _ = setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        &1 as &libc::c_int,
    );
    bind(fd, &SocketAddr::new(ip, 0))
}

/// Checks that `ip` can be bound as a source address (an address of this
/// machine, of the family of `to`).
pub fn check_source(ip: IpAddr, to: &SocketAddr) -> io::Result<()> {
    let fd = socket(family(to), false)?;
    bind_source(&fd, ip)
}

/// Opens a TCP connection to `to`, from `source` if given, giving up
/// after `timeout` with an error of kind `TimedOut`. The stream returned
/// is non-blocking.
pub fn connect(
    to: &SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let fd = socket(family(to), true)?;
    if let Some(ip) = source {
        bind_source(&fd, ip)?;
    }
    let (ss, len) = raw_addr(to);
    // SAFETY: ss holds a valid sockaddr of length len.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &ss as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        wait_connected(&fd, timeout)?;
    }
    Ok(TcpStream::from(fd))
}

/// Waits for a non-blocking connect on `fd` to finish.
fn wait_connected(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        let ms = left.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: pfd is one live pollfd.
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
        let mut err: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: err and len are live and len is err's size.
        cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        })?;
        return if err == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(err))
        };
    }
}

/// Makes closing `s` send RST at once instead of FIN (SO_LINGER on, 0 s):
/// no side of the connection is left in TIME_WAIT.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l is a live linger of the size given.
    cvt(unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A blocking listener on `addr` with SO_REUSEADDR and a backlog of
/// [`BACKLOG`] (std's is smaller; a full queue drops SYNs, which would
/// show as client timeouts rather than as the rate being measured).
pub fn listen(addr: &SocketAddr) -> io::Result<TcpListener> {
    let fd = socket(family(addr), false)?;
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &1 as &libc::c_int,
    )?;
    bind(&fd, addr)?;
    // SAFETY: plain syscall on a socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) })?;
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr_v4_and_v6() {
        let (ss, len) = raw_addr(&"10.1.2.3:258".parse().unwrap());
        assert_eq!(len as usize, mem::size_of::<libc::sockaddr_in>());
        // SAFETY: raw_addr wrote a sockaddr_in.
        let sin = unsafe { *(&ss as *const _ as *const libc::sockaddr_in) };
        assert_eq!(sin.sin_family as i32, libc::AF_INET);
        assert_eq!(u16::from_be(sin.sin_port), 258);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [10, 1, 2, 3]);

        let (ss, len) = raw_addr(&"[fe80::1%7]:443".parse().unwrap());
        assert_eq!(len as usize, mem::size_of::<libc::sockaddr_in6>());
        // SAFETY: raw_addr wrote a sockaddr_in6.
        let sin6 = unsafe { *(&ss as *const _ as *const libc::sockaddr_in6) };
        assert_eq!(sin6.sin6_family as i32, libc::AF_INET6);
        assert_eq!(u16::from_be(sin6.sin6_port), 443);
        assert_eq!(sin6.sin6_scope_id, 7);
        assert_eq!(sin6.sin6_addr.s6_addr[0], 0xfe);
        assert_eq!(sin6.sin6_addr.s6_addr[15], 1);
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
