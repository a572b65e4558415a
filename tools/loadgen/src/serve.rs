//! `serve`: accept connections, read each until one byte or EOF, close.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ServeArgs;
use crate::{print_line, sock, Error};

/// How long one accepted connection may stay silent before it is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A listening server whose accept threads have not started yet.
pub struct Server {
    listener: TcpListener,
    accepted: Arc<AtomicU64>,
}

/// What `serve --duration` prints when it ends.
#[derive(Debug, Serialize)]
pub struct ServeReport {
    pub accepted: u64,
    pub seconds: f64,
    pub threads: usize,
}

impl Server {
    /// Listens on `addr`; the error says what to do about it.
    pub fn bind(addr: &SocketAddr) -> Result<Server, Error> {
        let listener = sock::listen(addr).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EADDRINUSE) => {
                    "something already listens on that port: stop it or pick another port"
                }
                Some(libc::EADDRNOTAVAIL) => {
                    "that address is not one of this machine's: use one shown by `ip addr`"
                }
                Some(libc::EACCES) => "ports below 1024 need root or CAP_NET_BIND_SERVICE",
                Some(libc::EAFNOSUPPORT) => "this kernel has no support for that address family",
                _ => "check the address and the machine's network setup",
            };
            Error::Setup(format!("cannot listen on {addr}: {e} ({hint})"))
        })?;
        Ok(Server {
            listener,
            accepted: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    /// Connections accepted so far, shared with the accept threads.
    pub fn accepted(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.accepted)
    }

    /// Starts `threads` accept loops; they run until the process ends.
    pub fn spawn(&self, threads: usize) -> Result<Vec<JoinHandle<()>>, Error> {
        (0..threads)
            .map(|i| {
                let l = self
                    .listener
                    .try_clone()
                    .map_err(|e| Error::Setup(format!("cannot share the listener: {e}")))?;
                let n = Arc::clone(&self.accepted);
                std::thread::Builder::new()
                    .name(format!("accept-{i}"))
                    .spawn(move || accept_loop(&l, &n))
                    .map_err(|e| Error::Setup(format!("cannot start accept thread {i}: {e}")))
            })
            .collect()
    }
}

fn accept_loop(l: &TcpListener, accepted: &AtomicU64) {
    let mut buf = [0u8; 1];
    loop {
        match l.accept() {
            Ok((mut s, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                // A peer that resets (--rst) or stays silent is no error here.
                let _ = s.set_read_timeout(Some(READ_TIMEOUT));
                let _ = s.read(&mut buf);
            }
            // Out of descriptors or memory: let the others close first.
            // Anything else (ECONNABORTED and the like): that one is gone, go on.
            Err(e) => {
                if let Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) =
                    e.raw_os_error()
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

pub fn run(a: &ServeArgs) -> Result<(), Error> {
    let server = Server::bind(&a.listen)?;
    let handles = server.spawn(a.threads)?;
    let start = Instant::now();
    eprintln!("vpm-loadgen: listening on {}", server.local_addr());
    print_line("ready")?;
    match a.duration {
        Some(d) => {
            std::thread::sleep(d);
            let report = ServeReport {
                accepted: server.accepted.load(Ordering::Relaxed),
                seconds: start.elapsed().as_secs_f64(),
                threads: a.threads,
            };
            let json = serde_json::to_string(&report)
                .map_err(|e| Error::Setup(format!("cannot encode the report: {e}")))?;
            // The accept threads block in accept(2); returning from main ends them.
            print_line(&json)
        }
        None => {
            for h in handles {
                let _ = h.join();
            }
            // accept_loop never returns; only a panic gets here.
            Err(Error::Setup("the accept threads stopped".to_string()))
        }
    }
}
