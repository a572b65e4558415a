//! A generic netlink connection to the vpm family.

use std::cell::{Cell, RefCell};
use std::io::{Cursor, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use neli::{
    consts::{
        genl::{CtrlAttr, CtrlAttrMcastGrp, CtrlCmd, Index, NlAttrType},
        nl::{GenlId, NlmF, Nlmsg, NlmsgerrAttr},
        socket::Msg,
        socket::NlFamily,
        MAX_NL_LENGTH,
    },
    err::DeError,
    genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, Nlattr, NlattrBuilder, NoUserHeader},
    nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder},
    socket::NlSocket,
    types::{Buffer, GenlBuffer},
    utils::Groups,
    FromBytes, FromBytesWithInput, Size, ToBytes,
};

use crate::error::{extack_text, Error, KernelError, Result};
use crate::uapi::{Cmd, EVENTS_GROUP, FAMILY_NAME, FAMILY_VERSION};

/// Version of the generic netlink controller protocol.
const CTRL_VERSION: u8 = 2;
/// The generic netlink controller's family name and its multicast group
/// of family (un)registrations.
const CTRL_FAMILY: &str = "nlctrl";
const CTRL_NOTIFY_GROUP: &str = "notify";

/// What a subscribed socket received.
pub enum Incoming<A: NlAttrType> {
    /// One or more notifications, in the order they were sent.
    Events(Vec<Genlmsghdr<Cmd, A>>),
    /// The kernel dropped notifications: the receive buffer was full.
    Overrun,
}

/// A socket bound to the vpm family of the caller's network namespace.
///
/// It talks to the socket directly, with its own send-and-receive loops,
/// rather than through neli's router, because of the pipelined write
/// ([`Connection::pipeline`]): a batch sends up to 64 `add` requests in
/// one write(2), which the router cannot do (it sends each message alone
/// and owns the socket from a thread of its own).  The one-request loop
/// ([`Connection::exchange`]) shares that socket and its sequence numbers,
/// so it is hand-written too.  Replies are still decoded by neli, their
/// attributes through [`crate::attrs::Attrs`].
pub struct Connection {
    sock: NlSocket,
    /// Where datagrams are received, reused for the connection's life.
    /// (neli's `NlSocketHandle` zeroes its 32 KiB buffer again after every
    /// datagram: most of a batch's time under emulation, where a batch
    /// receives one datagram per request.)
    rbuf: RefCell<Vec<u8>>,
    family: u16,
    /// Multicast group ids of the family, by name.
    groups: Vec<(String, u32)>,
    seq: Cell<u32>,
}

impl Connection {
    /// Connects and resolves the family by name, with extended acks and
    /// strict checking on.
    pub fn open() -> Result<Self> {
        let sock = open_socket()?;
        sock.enable_ext_ack(true)
            .map_err(|e| Error::Netlink(format!("cannot enable extended acks: {e}")))?;
        sock.enable_strict_checking(true)
            .map_err(|e| Error::Netlink(format!("cannot enable strict checking: {e}")))?;
        let mut conn = Self {
            sock,
            rbuf: RefCell::new(vec![0; MAX_NL_LENGTH]),
            family: GenlId::Ctrl.into(),
            groups: Vec::new(),
            seq: Cell::new(0),
        };
        (conn.family, conn.groups) = conn.resolve_family()?;
        Ok(conn)
    }

    /// Joins multicast group `name` of the family, and the generic
    /// netlink controller's notifications (which say when the family goes
    /// away with the module); messages then arrive through
    /// [`Connection::next_events`].
    pub fn subscribe(&self, name: &str) -> Result<()> {
        let id = self
            .groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| {
                Error::Protocol(format!("the module has no '{name}' multicast group"))
            })?;
        let (_, ctrl_groups) = self.resolve(CTRL_FAMILY, "resolve the genetlink controller")?;
        let notify = ctrl_groups
            .iter()
            .find(|(n, _)| n == CTRL_NOTIFY_GROUP)
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::Protocol(format!("no '{CTRL_NOTIFY_GROUP}' multicast group")))?;
        // The controller's group first: once it is joined, the family's
        // removal cannot pass unseen.  Joining a group of a family that is
        // already gone succeeds all the same, hence the check after.
        for (group, what) in [(notify, CTRL_NOTIFY_GROUP), (id, name)] {
            self.sock
                .add_mcast_membership(Groups::new_groups(&[group]))
                .map_err(|e| Error::Netlink(format!("cannot join the {what} group: {e}")))?;
        }
        if !self.family_still_registered()? {
            return Err(Error::Unloaded("monitor"));
        }
        Ok(())
    }

    /// Whether this connection's family is still registered, asked over a
    /// socket of its own: this one's receive queue holds events that must
    /// not be read past (and, after an overrun, may still be full).
    fn family_still_registered(&self) -> Result<bool> {
        match Connection::open() {
            Ok(other) => Ok(other.family == self.family),
            Err(Error::NotLoaded) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Blocks for the next multicast messages (at least one), or for the
    /// news that some were lost.
    pub fn next_events(&self) -> Result<Incoming<u16>> {
        loop {
            let msgs = match self.recv::<Genlmsghdr<Cmd, u16>>() {
                Ok(r) => r,
                // The kernel found the socket's receive buffer full and
                // dropped events: the reader is behind, not broken.  The
                // dropped ones may include the family's removal.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if !self.family_still_registered()? {
                        return Err(Error::Unloaded("monitor"));
                    }
                    return Ok(Incoming::Overrun);
                }
                Err(e) => return Err(Error::Netlink(format!("monitor: receive: {e}"))),
            };
            let mut out = Vec::new();
            for msg in msgs {
                let msg =
                    msg.map_err(|e| Error::Netlink(format!("monitor: malformed event: {e}")))?;
                if *msg.nl_type() == u16::from(GenlId::Ctrl) {
                    if let NlPayload::Payload(p) = msg.nl_payload() {
                        if self.family_removed(p) {
                            return Err(Error::Unloaded("monitor"));
                        }
                    }
                    continue;
                }
                if *msg.nl_type() != self.family {
                    continue;
                }
                if let NlPayload::Payload(p) = msg.nl_payload() {
                    out.push(p.clone());
                }
            }
            if !out.is_empty() {
                return Ok(Incoming::Events(out));
            }
        }
    }

    /// Whether controller notification `msg` says this connection's
    /// family was unregistered (`CTRL_CMD_DELFAMILY` with its id).
    fn family_removed(&self, msg: &Genlmsghdr<Cmd, u16>) -> bool {
        let del = u8::from(CtrlCmd::Delfamily);
        if u8::from(*msg.cmd()) != del {
            return false;
        }
        msg.attrs().iter().any(|a| {
            *a.nla_type().nla_type() == u16::from(CtrlAttr::FamilyId)
                && a.nla_payload().as_ref() == self.family.to_ne_bytes()
        })
    }

    fn resolve_family(&self) -> Result<(u16, Vec<(String, u32)>)> {
        self.resolve(FAMILY_NAME, "resolve the vpm family")
    }

    /// Whether the vpm family this connection resolved is still registered
    /// (a module unloaded, or unloaded and loaded again, is not).
    pub fn family_alive(&self) -> Result<bool> {
        match self.resolve_family() {
            Ok((id, _)) => Ok(id == self.family),
            Err(Error::NotLoaded) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id and multicast groups of generic netlink family `name`.
    fn resolve(&self, name: &str, what: &'static str) -> Result<(u16, Vec<(String, u32)>)> {
        let mut attrs = GenlBuffer::new();
        attrs.push(attr(CtrlAttr::FamilyName, nul_str(name))?);
        let replies = match self.exchange(
            what,
            GenlId::Ctrl.into(),
            CtrlCmd::Getfamily,
            CTRL_VERSION,
            attrs,
            NlmF::ACK,
        ) {
            Ok((r, _)) => r,
            Err(Error::Kernel(e)) if e.errno == libc::ENOENT => return Err(Error::NotLoaded),
            Err(e) => return Err(e),
        };
        let reply = replies.first().ok_or(Error::NotLoaded)?;
        let handle = reply.attrs().get_attr_handle();
        let id = handle
            .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
            .map_err(|_| Error::NotLoaded)?;
        let mut groups = Vec::new();
        if let Ok(list) = handle.get_nested_attributes::<Index>(CtrlAttr::McastGroups) {
            for item in list.iter() {
                let Ok(grp) = item.get_attr_handle::<CtrlAttrMcastGrp>() else {
                    continue;
                };
                if let (Ok(name), Ok(gid)) = (
                    grp.get_attr_payload_as_with_len::<String>(CtrlAttrMcastGrp::Name),
                    grp.get_attr_payload_as::<u32>(CtrlAttrMcastGrp::Id),
                ) {
                    groups.push((name, gid));
                }
            }
        }
        Ok((id, groups))
    }

    /// A second socket that wakes a waiting client: it listens to the
    /// family's `events` group (releases, flushes, config changes) and to
    /// the generic netlink controller's notifications (the family going
    /// away with the module).  Events that arrive after this returns are
    /// kept until [`Watch::wait`].
    pub fn watch(&self) -> Result<Watch> {
        let group = |groups: &[(String, u32)], name: &str| {
            groups
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| Error::Protocol(format!("no '{name}' multicast group")))
        };
        let events = group(&self.groups, EVENTS_GROUP)?;
        let (_, ctrl_groups) = self.resolve(CTRL_FAMILY, "resolve the genetlink controller")?;
        let notify = group(&ctrl_groups, CTRL_NOTIFY_GROUP)?;
        let sock = open_socket()?;
        sock.add_mcast_membership(Groups::new_groups(&[events, notify]))
            .map_err(|e| Error::Netlink(format!("cannot join the {EVENTS_GROUP} group: {e}")))?;
        Ok(Watch { sock })
    }

    /// Sends a `do` request and returns the reply messages.
    pub fn request<A: NlAttrType>(
        &self,
        name: &'static str,
        cmd: Cmd,
        attrs: GenlBuffer<A, Buffer>,
    ) -> Result<Vec<Genlmsghdr<Cmd, A>>> {
        Ok(self
            .exchange(name, self.family, cmd, FAMILY_VERSION, attrs, NlmF::ACK)?
            .0)
    }

    /// Sends a `do` request that answers with exactly one message.  No
    /// ack is asked for: the reply says it succeeded (an error still comes
    /// as an error message), which saves a message per request in batches.
    pub fn request_one<A: NlAttrType>(
        &self,
        name: &'static str,
        cmd: Cmd,
        attrs: GenlBuffer<A, Buffer>,
    ) -> Result<Genlmsghdr<Cmd, A>> {
        self.exchange(name, self.family, cmd, FAMILY_VERSION, attrs, NlmF::empty())?
            .0
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol(format!("no reply to {name}")))
    }

    /// Sends several `do` requests of `cmd` that each answer with one
    /// message, in one write, and returns each one's outcome in order.
    ///
    /// The kernel runs every request of the write, whatever happens to
    /// the ones before it: callers that must stop at the first failure
    /// undo what came after it.
    ///
    /// This is why requests are sent and received by hand here (see
    /// [`Connection`]): neli has no call that writes many messages at once.
    pub fn pipeline<A: NlAttrType>(
        &self,
        name: &'static str,
        cmd: Cmd,
        requests: Vec<GenlBuffer<A, Buffer>>,
    ) -> Result<Vec<Result<Genlmsghdr<Cmd, A>>>> {
        let nl_err =
            |what: &str, e: &dyn std::fmt::Display| Error::Netlink(format!("{name}: {what}: {e}"));
        let first = self.seq.get().wrapping_add(1);
        let mut buf = Vec::new();
        for attrs in requests {
            let seq = self.seq.get().wrapping_add(1);
            self.seq.set(seq);
            let msg = self
                .build(self.family, cmd, FAMILY_VERSION, attrs, NlmF::REQUEST, seq)
                .map_err(|e| nl_err("cannot build the request", &e))?;
            let mut bytes = Cursor::new(vec![0; msg.padded_size()]);
            msg.to_bytes(&mut bytes)
                .map_err(|e| nl_err("cannot build the request", &e))?;
            buf.extend_from_slice(bytes.get_ref());
        }
        let n = self.seq.get().wrapping_sub(first).wrapping_add(1) as usize;
        // SAFETY: the socket outlives this borrow, which ends with the
        // statement; the duplicate is an independent descriptor.
        let fd = unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) };
        let mut out = std::fs::File::from(fd.try_clone_to_owned().map_err(|e| nl_err("dup", &e))?);
        // A netlink socket takes a write(2) like a sendmsg(2) of one buffer.
        out.write_all(&buf).map_err(|e| nl_err("send", &e))?;

        let mut outcomes: Vec<Option<Result<Genlmsghdr<Cmd, A>>>> = (0..n).map(|_| None).collect();
        let mut left = n;
        while left > 0 {
            let msgs = self
                .recv::<Genlmsghdr<Cmd, A>>()
                .map_err(|e| nl_err("receive", &e))?;
            for msg in msgs {
                let msg = msg.map_err(|e| nl_err("malformed reply", &e))?;
                let i = msg.nl_seq().wrapping_sub(first) as usize;
                if i >= n || outcomes[i].is_some() {
                    continue;
                }
                outcomes[i] = Some(match msg.nl_payload() {
                    NlPayload::Payload(p) => Ok(p.clone()),
                    NlPayload::Err(e) => Err(kernel_error(name, *e.error(), e.ext_ack().iter())),
                    _ => Err(Error::Protocol(format!("unexpected answer to {name}"))),
                });
                left -= 1;
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every request answered"))
            .collect())
    }

    /// Dumps a table, each message decoded by `decode` as it arrives;
    /// retries (a few times) when the kernel reports the table changed
    /// during the dump (`NLM_F_DUMP_INTR`).
    pub fn dump<A: NlAttrType, T>(
        &self,
        name: &'static str,
        cmd: Cmd,
        decode: impl Fn(&Genlmsghdr<Cmd, A>) -> Result<T>,
    ) -> Result<Vec<T>> {
        for _ in 0..DUMP_TRIES {
            // A message that does not decode does not end the exchange:
            // the dump is read to its end (else it would stay open on the
            // socket and fail the connection's next one), and an
            // interrupted dump is retried whatever it held.
            let mut decoded = Ok(Vec::new());
            let interrupted = self.exchange_with(
                name,
                self.family,
                cmd,
                FAMILY_VERSION,
                GenlBuffer::new(),
                NlmF::DUMP,
                |msg| {
                    if let Ok(items) = &mut decoded {
                        match decode(msg) {
                            Ok(item) => items.push(item),
                            Err(e) => decoded = Err(e),
                        }
                    }
                },
            )?;
            if !interrupted {
                return decoded;
            }
        }
        Err(Error::Netlink(format!(
            "{name}: the table kept changing during {DUMP_TRIES} dumps; try again"
        )))
    }

    /// One request message to generic netlink family `family`.
    fn build<C: neli::consts::genl::Cmd, A: NlAttrType>(
        &self,
        family: u16,
        cmd: C,
        version: u8,
        attrs: GenlBuffer<A, Buffer>,
        flags: NlmF,
        seq: u32,
    ) -> std::result::Result<Nlmsghdr<u16, Genlmsghdr<C, A>>, String> {
        let genl = GenlmsghdrBuilder::<C, A, NoUserHeader>::default()
            .cmd(cmd)
            .version(version)
            .attrs(attrs)
            .build()
            .map_err(|e| e.to_string())?;
        NlmsghdrBuilder::default()
            .nl_type(family)
            .nl_flags(flags)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(genl))
            .build()
            .map_err(|e| e.to_string())
    }

    /// Receives one datagram and decodes its messages; a message that
    /// does not decode is an `Err` in its place (and ends the list).
    fn recv<P>(&self) -> std::io::Result<Vec<std::result::Result<Nlmsghdr<u16, P>, DeError>>>
    where
        P: Size + FromBytesWithInput<Input = usize>,
    {
        let mut buf = self.rbuf.borrow_mut();
        let (len, _) = self.sock.recv(&mut buf[..], Msg::empty())?;
        let mut cursor = Cursor::new(&buf[..len]);
        let mut msgs = Vec::new();
        while (cursor.position() as usize) < len {
            match Nlmsghdr::from_bytes(&mut cursor) {
                Ok(m) => msgs.push(Ok(m)),
                Err(e) => {
                    msgs.push(Err(e));
                    break;
                }
            }
        }
        Ok(msgs)
    }

    /// Sends one request and collects its replies up to the ack (`do`) or
    /// `NLMSG_DONE` (dump).  Returns the replies and whether the kernel
    /// flagged a dump as interrupted.
    fn exchange<C: neli::consts::genl::Cmd, A: NlAttrType>(
        &self,
        name: &'static str,
        family: u16,
        cmd: C,
        version: u8,
        attrs: GenlBuffer<A, Buffer>,
        flags: NlmF,
    ) -> Result<(Vec<Genlmsghdr<C, A>>, bool)> {
        let mut replies = Vec::new();
        let interrupted = self.exchange_with(name, family, cmd, version, attrs, flags, |p| {
            replies.push(p.clone());
        })?;
        Ok((replies, interrupted))
    }

    /// [`Connection::exchange`], handing each reply to `sink` as it is
    /// received instead of keeping them: a dump of 65,535 allocations
    /// kept as neli messages cost more in memory than decoding them.
    /// Returns whether the kernel flagged a dump as interrupted.
    #[allow(clippy::too_many_arguments)]
    fn exchange_with<C: neli::consts::genl::Cmd, A: NlAttrType>(
        &self,
        name: &'static str,
        family: u16,
        cmd: C,
        version: u8,
        attrs: GenlBuffer<A, Buffer>,
        flags: NlmF,
        mut sink: impl FnMut(&Genlmsghdr<C, A>),
    ) -> Result<bool> {
        let nl_err =
            |what: &str, e: &dyn std::fmt::Display| Error::Netlink(format!("{name}: {what}: {e}"));
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let msg = self
            .build(family, cmd, version, attrs, NlmF::REQUEST | flags, seq)
            .map_err(|e| nl_err("cannot build the request", &e))?;
        let mut bytes = Cursor::new(Vec::with_capacity(msg.padded_size()));
        msg.to_bytes(&mut bytes)
            .map_err(|e| nl_err("cannot build the request", &e))?;
        self.sock
            .send(bytes.get_ref(), Msg::empty())
            .map_err(|e| nl_err("send", &e))?;

        let mut interrupted = false;
        loop {
            let msgs = self
                .recv::<Genlmsghdr<C, A>>()
                .map_err(|e| nl_err("receive", &e))?;
            for msg in msgs {
                let msg = msg.map_err(|e| nl_err("malformed reply", &e))?;
                if *msg.nl_seq() != seq {
                    continue;
                }
                interrupted |= msg.nl_flags().contains(NlmF::DUMP_INTR);
                let done = *msg.nl_type() == u16::from(Nlmsg::Done);
                match msg.nl_payload() {
                    // Without an ack or a dump, the one reply ends it.
                    NlPayload::Payload(p) if !done && flags.is_empty() => {
                        sink(p);
                        return Ok(interrupted);
                    }
                    NlPayload::Payload(p) if !done => sink(p),
                    NlPayload::Err(e) => {
                        return Err(kernel_error(name, *e.error(), e.ext_ack().iter()))
                    }
                    NlPayload::DumpExtAck(e) if *e.error() != 0 => {
                        return Err(kernel_error(name, *e.error(), e.ext_ack().iter()))
                    }
                    NlPayload::Ack(_) => return Ok(interrupted),
                    _ => {}
                }
                if done {
                    return Ok(interrupted);
                }
            }
        }
    }
}

/// A blocking generic netlink socket that takes unicast messages from the
/// kernel only.  (Multicast groups it joins still deliver whatever a
/// privileged process sends them: only `monitor` and [`Watch`] join any.)
fn open_socket() -> Result<NlSocket> {
    let sock = NlSocket::connect(NlFamily::Generic, None, Groups::empty())
        .map_err(|e| Error::Netlink(format!("cannot open a generic netlink socket: {e}")))?;
    sock.block()
        .map_err(|e| Error::Netlink(format!("cannot make the netlink socket blocking: {e}")))?;
    connect_to_kernel(&sock)
        .map_err(|e| Error::Netlink(format!("cannot connect the netlink socket: {e}")))?;
    Ok(sock)
}

/// Connects `sock` to the kernel (port id 0).  Replies are matched by
/// sequence number, and an unconnected netlink socket takes unicast
/// messages from any privileged process of the namespace (the kernel
/// refuses unprivileged senders): one of those could pass a forged reply
/// for the kernel's (a dump that `save` writes out and `restore` later
/// applies).  A connected socket takes unicast messages from its peer
/// only (the kernel refuses the others with ECONNREFUSED); multicast
/// groups still deliver.
fn connect_to_kernel(sock: &NlSocket) -> std::io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl is valid (plain integers).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `kernel` is a valid sockaddr_nl for the duration of the call,
    // the length is its size, and the descriptor is the socket `sock` owns.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            std::ptr::from_ref(&kernel).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The error the kernel answered with, and its extended-ack message.
fn kernel_error<'a>(
    request: &'static str,
    error: i32,
    ext_ack: impl Iterator<Item = &'a Nlattr<NlmsgerrAttr, Buffer>>,
) -> Error {
    let mut message = None;
    for a in ext_ack {
        if *a.nla_type().nla_type() == NlmsgerrAttr::Msg {
            message = extack_text(a.nla_payload().as_ref());
        }
    }
    Error::Kernel(KernelError {
        request,
        errno: -error,
        message,
    })
}

/// A socket that only listens (see [`Connection::watch`]).
pub struct Watch {
    sock: NlSocket,
}

impl Watch {
    /// Waits until something arrives or `timeout` passes, then discards
    /// everything queued.  Returns whether something arrived.  What the
    /// messages say does not matter to a waiter: any of them means "look
    /// again", and so does an overrun of the socket (a lost event).
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut woken = false;
        let mut wait = millis;
        // Bounded, so that a steady stream of events cannot keep the
        // caller here: whatever stays queued wakes the next wait at once.
        for _ in 0..WATCH_DRAIN {
            if !self.readable(wait)? {
                break;
            }
            woken = true;
            // One datagram (or the socket's overrun error): either way
            // something happened.
            // A one-byte buffer: the rest of the datagram is discarded.
            let _ = self.sock.recv(&mut [0u8; 1][..], Msg::empty());
            wait = 0;
        }
        Ok(woken)
    }

    /// Whether the socket has something to read within `millis` ms.
    fn readable(&self, millis: i32) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is one valid pollfd for the duration of the
            // call, and its descriptor is the socket `self` owns.
            let n = unsafe { libc::poll(&mut pfd, 1, millis) };
            if n >= 0 {
                return Ok(n > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR) != 0);
            }
            let err = std::io::Error::last_os_error();
            // A signal whose handler returns (none of vpmctl's) restarts
            // the wait; the default action ends the process anyway.
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Netlink(format!("poll: {err}")));
            }
        }
    }
}

/// Most datagrams one [`Watch::wait`] reads.
const WATCH_DRAIN: usize = 64;

/// How often a dump is retried after `NLM_F_DUMP_INTR`.
const DUMP_TRIES: usize = 5;

/// Builds one attribute.
pub fn attr<A: NlAttrType, P: neli::Size + neli::ToBytes>(
    ty: A,
    payload: P,
) -> Result<Nlattr<A, Buffer>> {
    let nla_type = AttrTypeBuilder::default()
        .nla_type(ty)
        .build()
        .map_err(|e| Error::Netlink(format!("cannot build attribute: {e}")))?;
    NlattrBuilder::default()
        .nla_type(nla_type)
        .nla_payload(payload)
        .build()
        .map_err(|e| Error::Netlink(format!("cannot build attribute: {e}")))
}

/// A NUL-terminated string payload.
pub fn nul_str(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}
