//! `connect`: open and close connections in a loop, count them.

use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ConnectArgs;
use crate::{sock, Error};

/// Failed attempts, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// ECONNREFUSED: nothing listens there (or a firewall rejects).
    pub refused: u64,
    /// No answer within --connect-timeout, or ETIMEDOUT.
    pub timeout: u64,
    /// ECONNRESET, ECONNABORTED, EPIPE.
    pub reset: u64,
    /// EADDRNOTAVAIL, EADDRINUSE: out of local ports (TIME_WAIT; see --rst).
    pub addr_unavailable: u64,
    /// Anything else (the first one is described on stderr).
    pub other: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Refused,
    Timeout,
    Reset,
    AddrUnavailable,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Refused,
        Kind::Timeout,
        Kind::Reset,
        Kind::AddrUnavailable,
        Kind::Other,
    ];

    pub fn of(e: &io::Error) -> Kind {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Kind::Refused,
            Some(libc::ETIMEDOUT) => Kind::Timeout,
            Some(libc::ECONNRESET | libc::ECONNABORTED | libc::EPIPE) => Kind::Reset,
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => Kind::AddrUnavailable,
            Some(_) => Kind::Other,
            None if e.kind() == io::ErrorKind::TimedOut => Kind::Timeout,
            None => Kind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Refused => "refused",
            Kind::Timeout => "timeout",
            Kind::Reset => "reset",
            Kind::AddrUnavailable => "addr_unavailable",
            Kind::Other => "other",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Kind::Refused => "is the server running and listening on that address and port?",
            Kind::Timeout => {
                "is the address reachable, and the server's backlog not full? \
                 Raise --connect-timeout for a slow path"
            }
            Kind::Reset => "the server or something on the path reset the connection",
            Kind::AddrUnavailable => {
                "out of local ports, likely held in TIME_WAIT: use --rst, \
                 or widen net.ipv4.ip_local_port_range"
            }
            Kind::Other => "see the error above",
        }
    }
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.reset + self.addr_unavailable + self.other
    }

    fn slot(&mut self, k: Kind) -> &mut u64 {
        match k {
            Kind::Refused => &mut self.refused,
            Kind::Timeout => &mut self.timeout,
            Kind::Reset => &mut self.reset,
            Kind::AddrUnavailable => &mut self.addr_unavailable,
            Kind::Other => &mut self.other,
        }
    }

    fn get(&self, k: Kind) -> u64 {
        match k {
            Kind::Refused => self.refused,
            Kind::Timeout => self.timeout,
            Kind::Reset => self.reset,
            Kind::AddrUnavailable => self.addr_unavailable,
            Kind::Other => self.other,
        }
    }

    fn add(&mut self, o: &Errors) {
        for k in Kind::ALL {
            *self.slot(k) += o.get(k);
        }
    }
}

/// The one line `connect` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub connections: u64,
    pub seconds: f64,
    pub rate: f64,
    pub errors: Errors,
    pub threads: usize,
    /// The first error of each kind, for stderr; not in the JSON.
    #[serde(skip)]
    pub first: Vec<(Kind, String)>,
}

impl Report {
    /// Describes on stderr the first error of each kind seen.
    pub fn describe_errors(&self) {
        for (k, msg) in &self.first {
            eprintln!(
                "vpm-loadgen: {} {} error(s), the first: {msg} ({})",
                self.errors.get(*k),
                k.name(),
                k.hint()
            );
        }
    }
}

/// What one connecting thread counted.
#[derive(Debug, Default)]
struct Tally {
    connections: u64,
    errors: Errors,
    first: Vec<(Kind, String)>,
}

impl Tally {
    fn fail(&mut self, e: &io::Error) {
        let k = Kind::of(e);
        *self.errors.slot(k) += 1;
        if !self.first.iter().any(|(f, _)| *f == k) {
            self.first.push((k, e.to_string()));
        }
    }
}

struct Plan {
    to: SocketAddr,
    source: Option<IpAddr>,
    write: bool,
    rst: bool,
    connect_timeout: Duration,
    deadline: Instant,
}

/// One connection: connect, write a byte if asked, close.
fn once(p: &Plan, timeout: Duration) -> io::Result<()> {
    let mut s: TcpStream = sock::connect(&p.to, p.source, timeout)?;
    if p.write {
        s.write_all(&[0])?;
    }
    if p.rst {
        sock::set_linger_zero(&s)?;
    } else {
        s.shutdown(Shutdown::Write)?;
    }
    Ok(()) // dropping s closes it
}

fn worker(p: &Plan) -> Tally {
    let mut t = Tally::default();
    loop {
        let left = p.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return t;
        }
        let cut = left < p.connect_timeout;
        match once(p, left.min(p.connect_timeout)) {
            Ok(()) => t.connections += 1,
            // Cut short by the end of the run, not by the peer: not counted.
            Err(e) if cut && e.raw_os_error().is_none() && Kind::of(&e) == Kind::Timeout => {
                return t
            }
            Err(e) => t.fail(&e),
        }
    }
}

pub fn run(a: &ConnectArgs) -> Result<Report, Error> {
    if let Some(src) = a.source {
        if src.is_ipv4() != a.to.is_ipv4() {
            return Err(Error::Usage(format!(
                "--source {src} and --to {} are of different address families; \
                 give both IPv4 or both IPv6",
                a.to
            )));
        }
        sock::check_source(src, &a.to).map_err(|e| {
            Error::Setup(format!(
                "cannot bind source address {src}: {e} \
                 (use an address of this machine, shown by `ip addr`)"
            ))
        })?;
    }
    let start = Instant::now();
    let plan = Plan {
        to: a.to,
        source: a.source,
        write: a.write,
        rst: a.rst,
        connect_timeout: a.connect_timeout,
        deadline: start + a.duration,
    };
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let mut handles = Vec::with_capacity(a.threads);
        for i in 0..a.threads {
            let h = std::thread::Builder::new()
                .name(format!("connect-{i}"))
                .spawn_scoped(sc, || worker(&plan))
                .map_err(|e| Error::Setup(format!("cannot start connect thread {i}: {e}")))?;
            handles.push(h);
        }
        Ok::<_, Error>(
            handles
                .into_iter()
                .map(|h| h.join().expect("a connect thread panicked"))
                .collect(),
        )
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for t in tallies {
        total.connections += t.connections;
        total.errors.add(&t.errors);
        for (k, m) in t.first {
            if !total.first.iter().any(|(f, _)| *f == k) {
                total.first.push((k, m));
            }
        }
    }
    Ok(Report {
        connections: total.connections,
        seconds,
        rate: if seconds > 0.0 {
            total.connections as f64 / seconds
        } else {
            0.0
        },
        errors: total.errors,
        threads: a.threads,
        first: total.first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_errors() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Kind::of(&os(libc::ECONNREFUSED)), Kind::Refused);
        assert_eq!(Kind::of(&os(libc::ETIMEDOUT)), Kind::Timeout);
        assert_eq!(
            Kind::of(&io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out"
            )),
            Kind::Timeout
        );
        assert_eq!(Kind::of(&os(libc::ECONNRESET)), Kind::Reset);
        assert_eq!(Kind::of(&os(libc::EPIPE)), Kind::Reset);
        assert_eq!(Kind::of(&os(libc::ECONNABORTED)), Kind::Reset);
        assert_eq!(Kind::of(&os(libc::EADDRNOTAVAIL)), Kind::AddrUnavailable);
        assert_eq!(Kind::of(&os(libc::EADDRINUSE)), Kind::AddrUnavailable);
        assert_eq!(Kind::of(&os(libc::EMFILE)), Kind::Other);
        assert_eq!(Kind::of(&io::Error::other("x")), Kind::Other);
    }

    #[test]
    fn report_json_has_every_error_kind() {
        let r = Report {
            connections: 10,
            seconds: 2.0,
            rate: 5.0,
            errors: Errors {
                refused: 1,
                ..Errors::default()
            },
            threads: 3,
            first: vec![(Kind::Refused, "x".into())],
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "connections": 10, "seconds": 2.0, "rate": 5.0, "threads": 3,
                "errors": {"refused": 1, "timeout": 0, "reset": 0,
                           "addr_unavailable": 0, "other": 0}
            })
        );
        assert_eq!(r.errors.total(), 1);
    }

    #[test]
    fn tally_keeps_the_first_error_of_each_kind() {
        let mut t = Tally::default();
        t.fail(&io::Error::from_raw_os_error(libc::ECONNREFUSED));
        t.fail(&io::Error::from_raw_os_error(libc::ECONNREFUSED));
        t.fail(&io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(t.errors.refused, 2);
        assert_eq!(t.errors.other, 1);
        assert_eq!(t.first.len(), 2);
    }
}
