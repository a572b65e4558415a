//! End-to-end tests on loopback: the binary against an in-process
//! server, against a closed port, and as a server itself.
//!
//! Traffic goes only to 127.0.0.1 and ::1, and every run is bounded by
//! its --duration.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpm_loadgen::serve::Server;

const BIN: &str = env!("CARGO_BIN_EXE_vpm-loadgen");
const KINDS: [&str; 5] = ["refused", "timeout", "reset", "addr_unavailable", "other"];

fn loadgen(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs vpm-loadgen")
}

/// Checks that stdout is exactly one line of the documented JSON; returns it.
fn one_json_line(out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}; stderr: {stderr}");
    let v: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    for key in ["connections", "seconds", "rate", "errors", "threads"] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    let errors = v["errors"].as_object().expect("errors is an object");
    for k in KINDS {
        assert!(errors[k].is_u64(), "errors.{k} in {v}");
    }
    let n = v["connections"].as_u64().unwrap() as f64;
    let s = v["seconds"].as_f64().unwrap();
    let r = v["rate"].as_f64().unwrap();
    assert!(s > 0.0);
    assert!(
        (r - n / s).abs() <= 1e-6 * r.max(1.0),
        "rate {r} != {n}/{s}"
    );
    v
}

fn error_total(v: &Value) -> u64 {
    KINDS.iter().map(|k| v["errors"][k].as_u64().unwrap()).sum()
}

/// A server in this process on an ephemeral port of `ip`, or None when
/// this machine has no such address (IPv6 disabled).
fn server_on(ip: &str, threads: usize) -> Option<(Server, SocketAddr)> {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let addr = SocketAddr::new(ip, 0);
    let s = match Server::bind(&addr) {
        Ok(s) => s,
        Err(e) if ip.is_ipv6() => {
            eprintln!("skipped: no IPv6 loopback here ({e})");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    s.spawn(threads).unwrap();
    let at = s.local_addr();
    Some((s, at))
}

#[test]
fn loopback_ipv4_counts_connections_without_errors() {
    let (server, at) = server_on("127.0.0.1", 2).unwrap();
    let at = at.to_string();
    let t0 = Instant::now();
    let out = loadgen(&["connect", "--to", &at, "--duration", "1", "--threads", "2"]);
    let took = t0.elapsed();
    let v = one_json_line(&out);
    assert!(out.status.success(), "{:?}: {v}", out.status);
    assert!(v["connections"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(error_total(&v), 0, "{v}");
    assert_eq!(v["threads"], 2);
    let s = v["seconds"].as_f64().unwrap();
    assert!((0.95..3.0).contains(&s), "seconds {s}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Every connection the client completed reached the server's queue.
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = v["connections"].as_u64().unwrap();
    while server.accepted().load(Ordering::Relaxed) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.accepted().load(Ordering::Relaxed) >= want);
}

#[test]
fn loopback_ipv6_with_write_and_rst() {
    let Some((_server, at)) = server_on("::1", 1) else {
        return;
    };
    let at = at.to_string();
    let out = loadgen(&[
        "connect",
        "--to",
        &at,
        "--duration",
        "0.5",
        "--write",
        "--rst",
        "--source",
        "::1",
    ]);
    let v = one_json_line(&out);
    assert!(out.status.success(), "{:?}: {v}", out.status);
    assert!(v["connections"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(error_total(&v), 0, "{v}");
    assert_eq!(v["threads"], 1);
}

#[test]
fn closed_port_counts_refused_and_still_prints_json() {
    // A port that was just free: bind an ephemeral one, then close it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("127.0.0.1:{port}");
    let out = loadgen(&["connect", "--to", &to, "--duration", "0.3"]);
    let v = one_json_line(&out);
    assert_eq!(out.status.code(), Some(3), "no connection: exit 3; {v}");
    assert_eq!(v["connections"], 0);
    assert!(v["errors"]["refused"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        error_total(&v),
        v["errors"]["refused"].as_u64().unwrap(),
        "{v}"
    );
    assert_eq!(v["rate"].as_f64().unwrap(), 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("server running"),
        "{stderr}"
    );
}

/// Kills the child if a test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_binary_prints_ready_then_its_count() {
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--duration",
            "3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    let at = line
        .trim()
        .strip_prefix("vpm-loadgen: listening on ")
        .unwrap_or_else(|| panic!("stderr: {line:?}"))
        .to_string();
    assert!(at.starts_with("127.0.0.1:") && !at.ends_with(":0"), "{at}");

    let out = loadgen(&["connect", "--to", &at, "--duration", "0.5", "--rst"]);
    let v = one_json_line(&out);
    assert!(out.status.success(), "{v}");
    assert_eq!(error_total(&v), 0, "{v}");

    let status = child.0.wait().unwrap();
    assert!(status.success());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let s: Value = serde_json::from_str(line.trim()).expect("serve's JSON");
    assert!(
        s["accepted"].as_u64().unwrap() >= v["connections"].as_u64().unwrap(),
        "{s} vs {v}"
    );
    assert_eq!(s["threads"], 2);
}

#[test]
fn serve_on_a_busy_port_says_so_and_exits_1() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = busy.local_addr().unwrap().to_string();
    let out = loadgen(&["serve", "--listen", &at, "--duration", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ready line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {at}")) && stderr.contains("another port"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let out = loadgen(&["connect", "--to", "::1:80", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[::1]:8080"));

    let out = loadgen(&[
        "connect",
        "--to",
        "[::1]:80",
        "--duration",
        "1",
        "--source",
        "127.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("different address families"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn foreign_source_address_exits_1() {
    // 192.0.2.1 (TEST-NET-1) is only bound, which fails; nothing is sent.
    let out = loadgen(&[
        "connect",
        "--to",
        "127.0.0.1:9",
        "--duration",
        "1",
        "--source",
        "192.0.2.1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot bind source address 192.0.2.1"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
