//! `vpmctl metrics`: the namespace's counters (`status`) and every
//! allocation's (`show`) in the Prometheus text exposition format
//! (version 0.0.4), printed once or served on `GET /metrics`.
//!
//! [`render`] builds the text from what the kernel reported, without a
//! kernel; [`Server::serve`] answers HTTP requests from any source of that text,
//! so both are tested on the host.  Every scrape reads the kernel anew
//! ([`scrape`]), over a connection of its own: a reloaded module is
//! found again, and nothing is ever served from an earlier read.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::mapping::{self, Mapping};
use crate::status::{self, Status};

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric's name starts with it (and `_`).
const PREFIX: &str = "vpm";

/// Whether a value only ever grows (a counter: `_total` is appended to its
/// name) or is a current value (a gauge).
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// A metric of the namespace: its name (without the prefix and `_total`),
/// kind, help, and the field of `vpmctl status` it shows.
type NamespaceMetric = (&'static str, Kind, &'static str, fn(&Status) -> u64);

/// The namespace's metrics, in `status`'s order.
const NAMESPACE: &[NamespaceMetric] = &[
    (
        "netfilter_hooks",
        Kind::Gauge,
        "Netfilter hooks vpm has registered in the network namespace (6 while it has an allocation, 0 otherwise).",
        |s| s.hooks.into(),
    ),
    (
        "packets_seen",
        Kind::Counter,
        "Packets vpm's hooks in the network namespace have inspected.",
        |s| s.pkts_seen,
    ),
    (
        "packets_translated_in",
        Kind::Counter,
        "Packets translated from a fixed port to an anonymous port.",
        |s| s.pkts_xlat_in,
    ),
    (
        "packets_translated_out",
        Kind::Counter,
        "Packets translated from an anonymous port back to its fixed port.",
        |s| s.pkts_xlat_out,
    ),
    (
        "packets_no_aid",
        Kind::Counter,
        "Packets for a fixed port that no rule, cgroup or default AID claimed (passed untouched).",
        |s| s.pkts_no_aid,
    ),
    (
        "packets_malformed",
        Kind::Counter,
        "Packets vpm could not parse safely (passed untouched).",
        |s| s.pkts_malformed,
    ),
    (
        "packets_fragments",
        Kind::Counter,
        "Non-first fragments, which carry no ports (passed untouched).",
        |s| s.pkts_fragments,
    ),
    (
        "packets_foreign",
        Kind::Counter,
        "Packets with vpm's ports that are not this host's own streams, e.g. forwarded (passed untouched).",
        |s| s.pkts_foreign,
    ),
    (
        "packets_peer",
        Kind::Counter,
        "Replies to an allocation's cooperative peers, which keep the anonymous port (passed untouched).",
        |s| s.pkts_peer,
    ),
    (
        "icmp_errors_translated",
        Kind::Counter,
        "ICMP and ICMPv6 errors whose quoted packet vpm translated.",
        |s| s.pkts_icmp_xlat,
    ),
    (
        "packets_dropped",
        Kind::Counter,
        "Packets that had to be translated but could not be made writable (dropped).",
        |s| s.pkts_dropped,
    ),
    (
        "flows_active",
        Kind::Gauge,
        "Flows pinned to their allocation now.",
        |s| s.flows_active,
    ),
    (
        "flows_pinned",
        Kind::Counter,
        "Flows pinned to their allocation so far.",
        |s| s.flows_new,
    ),
    (
        "flows_expired",
        Kind::Counter,
        "Pinned flows whose slot was reused after their idle timeout.",
        |s| s.flows_expired,
    ),
    (
        "flows_evicted",
        Kind::Counter,
        "Unconfirmed or closing pins pushed out of the flow table by new flows.",
        |s| s.flows_evicted,
    ),
    (
        "packets_unpinned",
        Kind::Counter,
        "Packets translated by the current rules because their flow has no pin.",
        |s| s.flows_unpinned,
    ),
];

/// A counter of each allocation: its name (without the prefix, unit and
/// `_total`), unit, help, and the field of `vpmctl show` it shows.
type AllocationMetric = (
    &'static str,
    Option<Unit>,
    &'static str,
    fn(&Mapping) -> u64,
);

/// Each allocation's counters.
const ALLOCATION: &[AllocationMetric] = &[
    (
        "allocation_in_packets",
        None,
        "Packets translated from the fixed port to the allocation's anonymous port.",
        |m| m.pkts_in,
    ),
    (
        "allocation_in",
        Some(Unit::Bytes),
        "Bytes (from the IP header on) translated from the fixed port to the allocation's anonymous port.",
        |m| m.bytes_in,
    ),
    (
        "allocation_out_packets",
        None,
        "Packets translated from the allocation's anonymous port back to the fixed port.",
        |m| m.pkts_out,
    ),
    (
        "allocation_out",
        Some(Unit::Bytes),
        "Bytes (from the IP header on) translated from the allocation's anonymous port back to the fixed port.",
        |m| m.bytes_out,
    ),
];

/// One read of the kernel, as the registry encodes it on a scrape.
#[derive(Debug)]
struct Snapshot {
    status: Status,
    maps: Vec<Mapping>,
}

impl Snapshot {
    /// The labels of each allocation, in `show`'s order (fixed port, then
    /// AID); `netns` comes from the registry.
    fn allocation_labels(&self) -> Vec<[(&'static str, String); 4]> {
        self.maps
            .iter()
            .map(|m| {
                [
                    ("aid", m.aid.as_str().to_owned()),
                    ("port", m.port.to_string()),
                    ("anon_port", m.anon_port.to_string()),
                    ("proto", m.proto.to_string()),
                ]
            })
            .collect()
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let info = ConstGauge::new(1i64);
        let mut m = enc.encode_descriptor(
            "info",
            "The vpm module's version (value 1).",
            None,
            info.metric_type(),
        )?;
        info.encode(m.encode_family(&[("version", self.status.version.as_str())])?)?;

        for (name, kind, help, value) in NAMESPACE {
            let v = value(&self.status);
            match kind {
                Kind::Counter => {
                    let c = ConstCounter::new(v);
                    c.encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)?;
                }
                Kind::Gauge => {
                    let g = ConstGauge::new(v);
                    g.encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
                }
            }
        }

        let n = ConstGauge::new(self.maps.len() as u64);
        n.encode(enc.encode_descriptor(
            "allocations",
            "Allocations of anonymous ports in the network namespace.",
            None,
            MetricType::Gauge,
        )?)?;

        let labels = self.allocation_labels();
        for (name, unit, help, value) in ALLOCATION {
            let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (map, labels) in self.maps.iter().zip(&labels) {
                ConstCounter::new(value(map)).encode(m.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// The exposition text of one read of the kernel: `status` and `maps`
/// of the network namespace whose inode is `netns`.
pub fn render(status: &Status, maps: &[Mapping], netns: u64) -> String {
    let mut registry = Registry::with_prefix_and_labels(
        PREFIX,
        [("netns".into(), netns.to_string().into())].into_iter(),
    );
    registry.register_collector(Box::new(Snapshot {
        status: status.clone(),
        maps: maps.to_vec(),
    }));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// The inode of the caller's network namespace: the `netns` label, as
/// `stat -L -c %i /proc/self/ns/net` and `lsns -t net` show it.
pub fn netns() -> Result<u64> {
    const NS: &str = "/proc/self/ns/net";
    crate::place::inode(std::path::Path::new(NS)).ok_or_else(|| {
        Error::Host(format!(
            "cannot read {NS}: its inode labels the metrics with the network namespace (is /proc mounted?)"
        ))
    })
}

/// Reads the kernel now and renders what it said.
pub fn scrape(netns: u64) -> Result<String> {
    let conn = Connection::open()?;
    let status = status::get(&conn)?;
    let maps = mapping::list(&conn)?;
    Ok(render(&status, &maps, netns))
}

/// `vpmctl metrics`: print once, or serve on `listen` until killed.
pub fn run(listen: Option<SocketAddr>) -> Result<()> {
    let netns = netns()?;
    let Some(addr) = listen else {
        print!("{}", scrape(netns)?);
        return Ok(());
    };
    let server = bind(addr)?;
    let at = server.local_addr().unwrap_or(addr);
    eprintln!("vpmctl: serving metrics on http://{at}/metrics");
    server.serve(|| scrape(netns), &AtomicBool::new(false));
    Ok(())
}

/// The longest request head (request line and headers) read; a longer
/// one is answered 431.
const MAX_HEAD: usize = 8 * 1024;

/// At most this much of what a client sends after its request is read
/// (and discarded) before its connection is closed.
const MAX_DRAIN: usize = 64 * 1024;

/// A blocking HTTP/1.1 server for `GET /metrics`: one thread, one
/// connection at a time, one request per connection.  Every wait on a
/// client is bounded, so no client holds up the next one for longer than
/// `read_timeout` (the whole request head) plus `write_timeout` (the
/// whole response), and no client costs a thread or unbounded memory.
pub struct Server {
    listener: TcpListener,
    /// How long a client has to send its whole request head.
    pub read_timeout: Duration,
    /// How long a client has to take the whole response.
    pub write_timeout: Duration,
}

/// A server listening on `addr`.
pub fn bind(addr: SocketAddr) -> Result<Server> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        Error::Host(format!(
            "cannot listen on {addr}: {e} (pick another address or port)"
        ))
    })?;
    Ok(Server {
        listener,
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(10),
    })
}

/// A request that can be answered, or why not.
#[derive(Debug, PartialEq)]
enum Request<'a> {
    /// Method and path (the query string removed).
    Ok(&'a str, &'a str),
    /// Not a request line: 400.
    Malformed,
}

/// The request line at the start of `head`.
fn parse_request(head: &[u8]) -> Request<'_> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Malformed;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method)
        || !target.starts_with('/')
        || !target.bytes().all(|b| b.is_ascii_graphic())
        || !version.starts_with("HTTP/1.")
    {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or_default();
    Request::Ok(method, path)
}

/// Where the request head in `buf` ends (after its blank line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The time left until `deadline`, if any.
fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// What a connection is answered: status code, extra headers, content
/// type and body.
type Response = (
    u16,
    &'static [(&'static str, &'static str)],
    &'static str,
    String,
);

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

impl Server {
    /// The address the server listens on (the port chosen if it was 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers connections one at a time until `stop` is set (checked
    /// after each accept): `GET /metrics` (or `HEAD`, a query string
    /// allowed) with what `scrape` returns at that moment, 503 (module
    /// not loaded) or 500 (any other failure) with the error's text when
    /// it fails, 404 for other paths, 405 for other methods, 400 for what
    /// is no request and 431 for a head over 8 KiB.  A failed scrape is
    /// logged when it differs from the previous one's outcome; a failed
    /// accept (e.g. EMFILE) when it differs from the last one logged or a
    /// minute after it, and is retried 100 ms later.  Never returns
    /// otherwise.
    pub fn serve(&self, mut scrape: impl FnMut() -> Result<String>, stop: &AtomicBool) {
        let mut last_error: Option<String> = None;
        let mut last_accept_error: Option<(String, Instant)> = None;
        loop {
            let accepted = self.listener.accept();
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match accepted {
                Ok((stream, _)) => self.handle(stream, &mut scrape, &mut last_error),
                Err(e) => {
                    let what = e.to_string();
                    let quiet = last_accept_error.as_ref().is_some_and(|(w, at)| {
                        *w == what && at.elapsed() < Duration::from_secs(60)
                    });
                    if !quiet {
                        eprintln!(
                            "vpmctl: metrics: accepting a connection failed: {what} \
                             (retrying; logged again after a minute)"
                        );
                        last_accept_error = Some((what, Instant::now()));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Reads one request head from `stream`, answers it and closes the
    /// connection; a client that is too slow, goes away or fails gets no
    /// answer.
    fn handle(
        &self,
        mut stream: TcpStream,
        scrape: &mut impl FnMut() -> Result<String>,
        last_error: &mut Option<String>,
    ) {
        let deadline = Instant::now() + self.read_timeout;
        let mut buf = vec![0u8; MAX_HEAD];
        let mut len = 0;
        let end = loop {
            if let Some(end) = head_end(&buf[..len]) {
                break Some(end);
            }
            if len == buf.len() {
                break None;
            }
            let Some(wait) = left(deadline) else { return };
            if stream.set_read_timeout(Some(wait)).is_err() {
                return;
            }
            match stream.read(&mut buf[len..]) {
                Ok(0) => return,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        };
        let (head, response) = match end {
            None => (
                false,
                (431, &[][..], TEXT, "request head too large\n".into()),
            ),
            Some(end) => match parse_request(&buf[..end]) {
                Request::Malformed => (false, (400, &[][..], TEXT, "bad request\n".into())),
                Request::Ok(method, path) => {
                    (method == "HEAD", answer(method, path, scrape, last_error))
                }
            },
        };
        if self.respond(&mut stream, response, head).is_err() {
            return;
        }
        // Anything the client sent after its request is ignored; it is
        // read (a little of it, briefly) before closing so that the
        // close does not reset the connection and lose the response.
        let _ = stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + self.read_timeout.min(Duration::from_secs(1));
        let mut drained = 0;
        while drained < MAX_DRAIN {
            let Some(wait) = left(deadline) else { break };
            if stream.set_read_timeout(Some(wait)).is_err() {
                break;
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Writes `response` (its body only if not `head`) within
    /// `write_timeout`.
    fn respond(
        &self,
        stream: &mut TcpStream,
        (code, extra, content_type, body): Response,
        head: bool,
    ) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
            reason(code),
            body.len()
        );
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head {
            out.extend_from_slice(body.as_bytes());
        }
        let deadline = Instant::now() + self.write_timeout;
        let mut sent = 0;
        while sent < out.len() {
            let wait = left(deadline).ok_or(std::io::ErrorKind::TimedOut)?;
            stream.set_write_timeout(Some(wait))?;
            match stream.write(&out[sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The response to `method` on `path`.
fn answer(
    method: &str,
    path: &str,
    scrape: &mut impl FnMut() -> Result<String>,
    last_error: &mut Option<String>,
) -> Response {
    if path != "/metrics" {
        return (404, &[], TEXT, "not found: vpmctl serves /metrics\n".into());
    }
    if !matches!(method, "GET" | "HEAD") {
        return (
            405,
            &[("Allow", "GET, HEAD")],
            TEXT,
            "method not allowed: use GET /metrics\n".into(),
        );
    }
    match scrape() {
        Ok(text) => {
            if last_error.take().is_some() {
                eprintln!("vpmctl: metrics: scrapes work again");
            }
            (200, &[], CONTENT_TYPE, text)
        }
        Err(e) => {
            let text = e.to_string();
            if last_error.as_deref() != Some(&text) {
                eprintln!("vpmctl: metrics: scrape failed: {text}");
                *last_error = Some(text.clone());
            }
            let code = match e {
                Error::NotLoaded | Error::Unloaded(_) => 503,
                _ => 500,
            };
            (code, &[], TEXT, format!("vpmctl: {text}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aid::Aid;
    use crate::proto::Proto;
    use std::collections::{BTreeMap, HashMap};

    /// A sample: metric name, labels, value.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: String,
    }

    /// A metric name as the exposition format allows it.
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses the label set `{a="x",b="y"}` at the start of `s` (label
    /// values unescaped: \\, \" and \n); returns it and the rest.
    fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        let mut rest = s.strip_prefix('{').expect("labels start with {");
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return (labels, r);
            }
            let (key, r) = rest.split_once("=\"").expect("label=\"");
            assert!(is_name(key) && !key.contains(':'), "label name {key:?}");
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("escape").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => panic!("bad escape \\{c}"),
                    },
                    (_, '\n') => panic!("raw newline in a label value"),
                    (_, c) => value.push(c),
                }
            };
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "{key} twice"
            );
            rest = &r[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// Parses exposition text as Prometheus does (format 0.0.4), and
    /// checks it on the way: every line is a HELP, a TYPE or a sample;
    /// each metric has one HELP and one TYPE, before its samples; a
    /// counter's name ends in _total.  Returns the samples and each
    /// metric's (type, help).
    fn parse(text: &str) -> (Vec<Sample>, HashMap<String, (String, String)>) {
        assert!(text.ends_with('\n'), "no final newline");
        let mut meta: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(is_name(name), "{line}");
                let slot = &mut meta.entry(name.into()).or_default().1;
                assert!(slot.replace(help.into()).is_none(), "two HELPs: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                assert!(is_name(name), "{line}");
                assert!(["counter", "gauge"].contains(&ty), "{line}");
                if ty == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                let slot = &mut meta.entry(name.into()).or_default().0;
                assert!(slot.replace(ty.into()).is_none(), "two TYPEs: {line}");
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let end = line.find(['{', ' ']).expect(line);
                let name = &line[..end];
                assert!(is_name(name), "{line}");
                let (labels, rest) = if line[end..].starts_with('{') {
                    parse_labels(&line[end..])
                } else {
                    (BTreeMap::new(), &line[end..])
                };
                let value = rest.strip_prefix(' ').expect(line);
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let (ty, help) = meta.get(name).expect("HELP and TYPE before samples");
                assert!(ty.is_some() && help.is_some(), "{line}");
                samples.push(Sample {
                    name: name.into(),
                    labels,
                    value: value.into(),
                });
            }
        }
        let meta = meta
            .into_iter()
            .map(|(k, (t, h))| (k.clone(), (t.expect(&k), h.expect(&k))))
            .collect();
        (samples, meta)
    }

    /// A status whose every field differs, with an awkward version.
    fn status() -> Status {
        Status {
            version: "0.1.0 \"rc\\1\"\nnext".into(),
            hooks: 6,
            pkts_seen: 1 << 40,
            pkts_xlat_in: 2,
            pkts_xlat_out: 3,
            pkts_no_aid: 4,
            pkts_malformed: 5,
            pkts_fragments: 7,
            pkts_icmp_xlat: 8,
            flows_active: 9,
            flows_new: 10,
            flows_expired: 11,
            flows_evicted: 12,
            flows_unpinned: 13,
            pkts_dropped: 14,
            pkts_foreign: 15,
            pkts_peer: 16,
        }
    }

    fn mapping(aid: &str, port: u16, proto: Proto, anon: u16, base: u64) -> Mapping {
        Mapping {
            aid: Aid::new(aid).unwrap(),
            port,
            proto,
            anon_port: anon,
            cgroup: None,
            cgroup_id: None,
            pkts_in: base,
            bytes_in: base * 100 + 1,
            pkts_out: base + 2,
            bytes_out: u64::MAX - base,
            peers: Vec::new(),
        }
    }

    const NETNS: u64 = 4026531840;

    fn one(samples: &[Sample], name: &str) -> String {
        let found: Vec<_> = samples.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0].value.clone()
    }

    #[test]
    fn namespace_metrics_equal_the_status() {
        let st = status();
        let (samples, meta) = parse(&render(&st, &[], NETNS));
        let want: [(&str, u64); 16] = [
            ("vpm_netfilter_hooks", 6),
            ("vpm_packets_seen_total", 1 << 40),
            ("vpm_packets_translated_in_total", 2),
            ("vpm_packets_translated_out_total", 3),
            ("vpm_packets_no_aid_total", 4),
            ("vpm_packets_malformed_total", 5),
            ("vpm_packets_fragments_total", 7),
            ("vpm_packets_foreign_total", 15),
            ("vpm_packets_peer_total", 16),
            ("vpm_icmp_errors_translated_total", 8),
            ("vpm_packets_dropped_total", 14),
            ("vpm_flows_active", 9),
            ("vpm_flows_pinned_total", 10),
            ("vpm_flows_expired_total", 11),
            ("vpm_flows_evicted_total", 12),
            ("vpm_packets_unpinned_total", 13),
        ];
        for (name, v) in want {
            assert_eq!(one(&samples, name), v.to_string(), "{name}");
            let ty = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            assert_eq!(meta[name].0, ty, "{name}");
        }
        assert_eq!(one(&samples, "vpm_allocations"), "0");
        // Every status field is exported, and nothing else of the namespace.
        assert_eq!(NAMESPACE.len(), want.len());
        for s in &samples {
            assert!(s.name.starts_with("vpm_"), "{s:?}");
            if s.name != "vpm_info" {
                assert_eq!(
                    s.labels,
                    BTreeMap::from([("netns".into(), NETNS.to_string())]),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn info_carries_the_version_escaped_and_the_netns() {
        let text = render(&status(), &[], NETNS);
        // Quotes, backslashes and newlines escaped in the text itself.
        assert!(
            text.contains(
                "vpm_info{netns=\"4026531840\",version=\"0.1.0 \\\"rc\\\\1\\\"\\nnext\"} 1\n"
            ),
            "{text}"
        );
        let (samples, meta) = parse(&text);
        let info: Vec<_> = samples.iter().filter(|s| s.name == "vpm_info").collect();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].value, "1");
        assert_eq!(info[0].labels["version"], status().version);
        assert_eq!(info[0].labels["netns"], "4026531840");
        assert_eq!(meta["vpm_info"].0, "gauge");
    }

    #[test]
    fn allocation_metrics_equal_each_mapping_with_its_labels() {
        let maps = [
            mapping("a", 9000, Proto::Both, 20000, 5),
            mapping("web-blue.v2_1", 9000, Proto::Tcp, 20001, 1 << 33),
            mapping(&"Z".repeat(31), 53, Proto::Udp, 29999, 0),
        ];
        let (samples, meta) = parse(&render(&status(), &maps, NETNS));
        assert_eq!(one(&samples, "vpm_allocations"), "3");
        let names = [
            "vpm_allocation_in_packets_total",
            "vpm_allocation_in_bytes_total",
            "vpm_allocation_out_packets_total",
            "vpm_allocation_out_bytes_total",
        ];
        for name in names {
            assert_eq!(meta[name].0, "counter", "{name}");
            let got: Vec<_> = samples.iter().filter(|s| s.name == name).collect();
            assert_eq!(got.len(), maps.len(), "{name}");
            for (m, s) in maps.iter().zip(got) {
                let labels = BTreeMap::from([
                    ("netns".to_string(), NETNS.to_string()),
                    ("aid".into(), m.aid.as_str().into()),
                    ("port".into(), m.port.to_string()),
                    ("anon_port".into(), m.anon_port.to_string()),
                    ("proto".into(), m.proto.to_string()),
                ]);
                assert_eq!(s.labels, labels, "{name}");
                let want = match name {
                    "vpm_allocation_in_packets_total" => m.pkts_in,
                    "vpm_allocation_in_bytes_total" => m.bytes_in,
                    "vpm_allocation_out_packets_total" => m.pkts_out,
                    _ => m.bytes_out,
                };
                assert_eq!(s.value, want.to_string(), "{name} of {}", m.aid);
            }
        }
        let protos: Vec<_> = samples
            .iter()
            .filter(|s| s.name == names[0])
            .map(|s| s.labels["proto"].as_str())
            .collect();
        assert_eq!(protos, ["tcp,udp", "tcp", "udp"]);
    }

    /// An AID is written into the text as it is: the characters an AID may
    /// hold need no escaping, and the ones that would cannot be in one.
    #[test]
    fn aids_need_no_escaping() {
        for bad in ["a\"b", "a\\b", "a\nb"] {
            assert!(Aid::new(bad).is_err(), "{bad:?}");
        }
        let aid = "AZaz09._-";
        let text = render(&status(), &[mapping(aid, 1, Proto::Tcp, 2, 3)], NETNS);
        assert!(text.contains(&format!("aid=\"{aid}\"")), "{text}");
    }

    #[test]
    fn every_metric_has_help_and_type_even_without_samples() {
        let (_, meta) = parse(&render(&status(), &[], NETNS));
        assert_eq!(meta.len(), 1 + NAMESPACE.len() + 1 + ALLOCATION.len());
        for (name, (_, help)) in &meta {
            assert!(help.ends_with('.') && help.len() > 20, "{name}: {help}");
        }
    }

    // ---- the HTTP server ------------------------------------------------

    /// Sends one request, returns the status code, the headers (names in
    /// lowercase) and the body.
    fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, HashMap<String, String>, String) {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        split(&exchange(addr, request.as_bytes()))
    }

    /// Sends `request` as it is, returns all the server sent until it
    /// closed the connection.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// The status code, headers (names in lowercase) and body of `reply`,
    /// checked to be one response with `Content-Length` and
    /// `Connection: close`.
    fn split(reply: &str) -> (u16, HashMap<String, String>, String) {
        let (head, body) = reply.split_once("\r\n\r\n").expect(reply);
        let mut lines = head.lines();
        let code = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: HashMap<_, _> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        assert_eq!(headers["connection"], "close", "{reply}");
        let length: usize = headers["content-length"].parse().unwrap();
        assert!(body.is_empty() || body.len() == length, "{reply}");
        (code, headers, body.to_string())
    }

    /// A server on 127.0.0.1 (any port) fed by `scrape`, with the
    /// default timeouts, in a thread; the closure returned stops it.
    fn server(
        scrape: impl FnMut() -> Result<String> + Send + 'static,
    ) -> (SocketAddr, impl FnOnce()) {
        server_with(scrape, None)
    }

    /// A server as [`server`], with `timeout` to read a request head and
    /// to write a response if given.
    fn server_with(
        scrape: impl FnMut() -> Result<String> + Send + 'static,
        timeout: Option<Duration>,
    ) -> (SocketAddr, impl FnOnce()) {
        let mut server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if let Some(t) = timeout {
            server.read_timeout = t;
            server.write_timeout = t;
        }
        let addr = server.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || server.serve(scrape, &stop))
        };
        (addr, move || {
            stop.store(true, Ordering::Relaxed);
            // Wakes the accept up.
            drop(std::net::TcpStream::connect(addr));
            thread.join().unwrap();
        })
    }

    #[test]
    fn serves_a_fresh_read_on_every_scrape() {
        let mut reads = 0u64;
        let (addr, stop) = server(move || {
            reads += 1;
            let st = Status {
                pkts_seen: reads,
                ..status()
            };
            Ok(render(
                &st,
                &[mapping("a", 9000, Proto::Udp, 20000, 7)],
                NETNS,
            ))
        });
        for want in 1..=3 {
            let (code, headers, body) = http(addr, "GET", "/metrics");
            assert_eq!(code, 200, "{body}");
            assert_eq!(headers["content-type"], CONTENT_TYPE);
            assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
            let (samples, _) = parse(&body);
            assert_eq!(one(&samples, "vpm_packets_seen_total"), want.to_string());
            assert_eq!(one(&samples, "vpm_allocation_in_packets_total"), "7");
        }
        // Query parameters (Prometheus' `params`) do not change the path.
        assert_eq!(http(addr, "GET", "/metrics?x=1").0, 200);
        let (code, headers, body) = http(addr, "HEAD", "/metrics");
        assert_eq!((code, body.as_str()), (200, ""));
        assert_eq!(headers["content-type"], CONTENT_TYPE);
        stop();
    }

    #[test]
    fn other_paths_are_not_found_and_other_methods_not_allowed() {
        let (addr, stop) = server(|| Ok(render(&status(), &[], NETNS)));
        for path in ["/", "/metricsx", "/metrics/", "/favicon.ico"] {
            let (code, _, body) = http(addr, "GET", path);
            assert_eq!(code, 404, "{path}");
            assert_eq!(body, "not found: vpmctl serves /metrics\n");
        }
        let (code, headers, _) = http(addr, "POST", "/metrics");
        assert_eq!(code, 405);
        assert_eq!(headers["allow"], "GET, HEAD");
        assert_eq!(http(addr, "GET", "/metrics").0, 200);
        stop();
    }

    #[test]
    fn a_failed_scrape_says_why_and_the_server_goes_on() {
        let mut n = 0;
        let (addr, stop) = server(move || {
            n += 1;
            match n {
                1 => Err(Error::NotLoaded),
                2 => Err(Error::Netlink(
                    "cannot open a netlink socket: EMFILE".into(),
                )),
                _ => Ok(render(&status(), &[], NETNS)),
            }
        });
        let (code, headers, body) = http(addr, "GET", "/metrics");
        assert_eq!(code, 503);
        assert_eq!(headers["content-type"], TEXT);
        assert_eq!(
            body,
            "vpmctl: vpm kernel module not loaded, and the kernel could not load it: insmod vpm.ko, or install it (make install) for modprobe; dmesg may say why\n"
        );
        let (code, _, body) = http(addr, "GET", "/metrics");
        assert_eq!(code, 500);
        assert_eq!(
            body,
            "vpmctl: netlink: cannot open a netlink socket: EMFILE\n"
        );
        let (code, _, body) = http(addr, "GET", "/metrics");
        assert_eq!(code, 200);
        parse(&body);
        stop();
    }

    #[test]
    fn head_has_the_length_of_get_and_no_body() {
        let (addr, stop) = server(|| Ok(render(&status(), &[], NETNS)));
        let (_, _, body) = http(addr, "GET", "/metrics");
        let (code, headers, body_head) = http(addr, "HEAD", "/metrics");
        assert_eq!((code, body_head.as_str()), (200, ""));
        assert_eq!(headers["content-length"], body.len().to_string());
        stop();
    }

    #[test]
    fn what_is_no_request_is_bad() {
        let (addr, stop) = server(|| Ok(render(&status(), &[], NETNS)));
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 x\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /m\xffetrics HTTP/1.1\r\n\r\n",
        ] {
            let (code, _, _) = split(&exchange(addr, bad));
            assert_eq!(code, 400, "{}", String::from_utf8_lossy(bad));
        }
        // A bare LF ends lines too, and HTTP/1.0 is answered.
        let (code, _, body) = split(&exchange(addr, b"GET /metrics HTTP/1.0\n\n"));
        assert_eq!(code, 200);
        parse(&body);
        stop();
    }

    /// A client that connects and sends nothing (or trickles its request)
    /// holds the server up for the read timeout at most, not forever.
    #[test]
    fn a_silent_or_slow_client_does_not_block_the_next_scrape() {
        let timeout = Duration::from_millis(200);
        let (addr, stop) = server_with(|| Ok(render(&status(), &[], NETNS)), Some(timeout));
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        let trickle = std::thread::spawn(move || {
            for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
                if slow.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        let (code, _, body) = http(addr, "GET", "/metrics");
        let took = start.elapsed();
        assert_eq!(code, 200);
        parse(&body);
        // Two timeouts (and some slack), far from the 5 s default.
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // The silent client was closed without an answer.
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        silent.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        trickle.join().unwrap();
        stop();
    }

    #[test]
    fn an_oversized_head_is_refused_and_the_server_goes_on() {
        let (addr, stop) = server(|| Ok(render(&status(), &[], NETNS)));
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.resize(request.len() + 20 * 1024, b'a');
        let (code, _, _) = split(&exchange(addr, &request));
        assert_eq!(code, 431);
        // Just within the limit is fine.
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.resize(MAX_HEAD - 4, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(split(&exchange(addr, &request)).0, 200);
        assert_eq!(http(addr, "GET", "/metrics").0, 200);
        stop();
    }

    #[test]
    fn one_response_per_connection_and_more_requests_ignored() {
        let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (addr, stop) = server({
            let scrapes = scrapes.clone();
            move || {
                scrapes.fetch_add(1, Ordering::Relaxed);
                Ok(render(&status(), &[], NETNS))
            }
        });
        let one = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
        let reply = exchange(addr, one.repeat(3).as_bytes());
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
        let (code, _, body) = split(&reply);
        assert_eq!(code, 200);
        parse(&body);
        assert_eq!(scrapes.load(Ordering::Relaxed), 1);
        assert_eq!(http(addr, "GET", "/metrics").0, 200);
        assert_eq!(scrapes.load(Ordering::Relaxed), 2);
        stop();
    }

    #[test]
    fn an_address_in_use_says_so() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let e = bind(addr).err().expect("a second bind fails");
        assert_eq!(e.exit_code(), crate::error::exit::HOST);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on {addr}: ")),
            "{e}"
        );
    }

    #[test]
    fn netns_is_this_process_namespace_inode() {
        use std::os::unix::fs::MetadataExt;
        let want = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(netns().unwrap(), want);
    }
}
