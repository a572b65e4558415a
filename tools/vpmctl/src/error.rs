//! vpmctl's errors: each says what went wrong and what to do, and carries
//! the kernel's errno and extended-ack message when the kernel refused.

use std::fmt;

/// Exit codes, documented in README.md.
pub mod exit {
    /// The kernel refused or failed the request.
    pub const KERNEL: i32 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: i32 = 2;
    /// The vpm module is not loaded.
    pub const NOT_LOADED: i32 = 3;
    /// Talking netlink failed, or the kernel's answer made no sense.
    pub const NETLINK: i32 = 4;
    /// The host lacks what `exec` needs (cgroup v2, the BPF filesystem,
    /// the kernel's cgroup-BPF support), or a hook could not be set; or
    /// `metrics` could not listen on its address or read its namespace.
    pub const HOST: i32 = 5;

    /// What each exit status means, for `--help` and the man page.
    pub const MEANINGS: &[(&[i32], &str)] = &[
        (&[0], "success"),
        (&[KERNEL], "the kernel refused or failed the request; the message says why and what to do"),
        (&[USAGE], "the command line was wrong, or a file it names could not be read or written"),
        (&[NOT_LOADED], "the vpm module is not loaded (insmod vpm.ko, or modprobe vpm once installed)"),
        (&[NETLINK], "talking netlink failed, or the kernel's answer made no sense"),
        (&[HOST], "the host lacks what exec needs (cgroup v2, the BPF filesystem, cgroup-BPF), its socket hooks could not be set, or another group holds the AID; metrics could not listen on its address or read /proc/self/ns/net"),
        (&[126, 127], "exec: the program was found but could not be run, or was not found; otherwise exec exits with the program's own status"),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("vpm kernel module not loaded, and the kernel could not load it: insmod vpm.ko, or install it (make install) for modprobe; dmesg may say why")]
    NotLoaded,
    #[error("vpm kernel module not loaded any more: it was unloaded while {0} waited (insmod vpm.ko, then try again)")]
    Unloaded(&'static str),
    #[error("{0}")]
    Kernel(KernelError),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("unexpected reply from the vpm module: {0} (is vpmctl older than the module?)")]
    Protocol(String),
    #[error("batch: {0}")]
    Batch(String),
    #[error("{0}")]
    Input(String),
    #[error("restore: {0}")]
    State(String),
    #[error("save: {0}")]
    Save(String),
    #[error("{0}")]
    Host(String),
    #[error("batch line {line}: {err}")]
    AtLine { line: usize, err: Box<Error> },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotLoaded | Error::Unloaded(_) => exit::NOT_LOADED,
            Error::Kernel(_) => exit::KERNEL,
            Error::Netlink(_) | Error::Protocol(_) => exit::NETLINK,
            Error::Batch(_) | Error::Input(_) => exit::USAGE,
            Error::State(_) | Error::Save(_) => exit::KERNEL,
            Error::Host(_) => exit::HOST,
            Error::AtLine { err, .. } => err.exit_code(),
        }
    }

    /// The same error, attributed to line `line` of a batch file.
    pub fn at_line(self, line: usize) -> Self {
        Error::AtLine {
            line,
            err: Box::new(self),
        }
    }
}

/// The kernel answered a request with an error.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelError {
    /// What vpmctl asked for, e.g. "get-status".
    pub request: &'static str,
    /// Positive errno.
    pub errno: i32,
    /// The extended-ack message, if the kernel gave one.
    pub message: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = std::io::Error::from_raw_os_error(self.errno);
        // io::Error appends " (os error N)"; keep only the description.
        let text = os.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{} failed: {}", self.request, text)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if self.errno == libc::EPERM {
            write!(f, " (this needs CAP_NET_ADMIN: run as root)")?;
        }
        Ok(())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The NUL-terminated text of an NLMSGERR_ATTR_MSG payload.
pub fn extack_text(payload: &[u8]) -> Option<String> {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    let text = String::from_utf8_lossy(&payload[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_names_request_errno_and_extack() {
        let e = KernelError {
            request: "add",
            errno: libc::EEXIST,
            message: Some("AID a already uses port 9000".into()),
        };
        assert_eq!(
            e.to_string(),
            "add failed: File exists: AID a already uses port 9000"
        );
    }

    #[test]
    fn eperm_says_what_to_do() {
        let e = KernelError {
            request: "add",
            errno: libc::EPERM,
            message: None,
        };
        assert!(e
            .to_string()
            .ends_with("(this needs CAP_NET_ADMIN: run as root)"));
    }

    #[test]
    fn not_loaded_message_and_code() {
        assert_eq!(
            Error::NotLoaded.to_string(),
            "vpm kernel module not loaded, and the kernel could not load it: insmod vpm.ko, or install it (make install) for modprobe; dmesg may say why"
        );
        assert_eq!(Error::NotLoaded.exit_code(), exit::NOT_LOADED);
    }

    #[test]
    fn unloaded_while_waiting_is_not_loaded() {
        let e = Error::Unloaded("add");
        assert!(
            e.to_string().starts_with("vpm kernel module not loaded"),
            "{e}"
        );
        assert_eq!(e.exit_code(), exit::NOT_LOADED);
    }

    #[test]
    fn batch_errors_name_the_line_and_keep_the_code() {
        let e = Error::NotLoaded.at_line(7);
        assert_eq!(
            e.to_string(),
            "batch line 7: vpm kernel module not loaded, and the kernel could not load it: insmod vpm.ko, or install it (make install) for modprobe; dmesg may say why"
        );
        assert_eq!(e.exit_code(), exit::NOT_LOADED);
    }

    #[test]
    fn extack_text_stops_at_nul() {
        assert_eq!(
            extack_text(b"missing attribute\0\0\0"),
            Some("missing attribute".into())
        );
        assert_eq!(extack_text(b"\0"), None);
        assert_eq!(extack_text(b"no nul"), Some("no nul".into()));
    }
}
