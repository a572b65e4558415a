//! A generic netlink connection to the vpm family.

use neli::{
    consts::{genl::NlAttrType, nl::NlmF, socket::NlFamily},
    err::RouterError,
    genl::{Genlmsghdr, GenlmsghdrBuilder, NoUserHeader},
    nl::NlPayload,
    router::synchronous::NlRouter,
    types::{Buffer, GenlBuffer},
    utils::Groups,
};

use crate::error::{extack_text, Error, KernelError, Result};
use crate::uapi::{Cmd, FAMILY_NAME, FAMILY_VERSION};

/// NLMSGERR_ATTR_MSG from <linux/netlink.h>.
const NLMSGERR_ATTR_MSG: u16 = 1;
const ENOENT: i32 = 2;

/// A socket bound to the vpm family of the caller's network namespace.
pub struct Connection {
    router: NlRouter,
    family: u16,
}

impl Connection {
    /// Connects and resolves the family by name, with extended acks and
    /// strict checking on.
    pub fn open() -> Result<Self> {
        let (router, _) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| Error::Netlink(format!("cannot open a generic netlink socket: {e}")))?;
        router
            .enable_ext_ack(true)
            .map_err(|e| Error::Netlink(format!("cannot enable extended acks: {e}")))?;
        router
            .enable_strict_checking(true)
            .map_err(|e| Error::Netlink(format!("cannot enable strict checking: {e}")))?;
        let family = match router.resolve_genl_family(FAMILY_NAME) {
            Ok(id) => id,
            Err(RouterError::Nlmsgerr(e)) if -*e.error() == ENOENT => return Err(Error::NotLoaded),
            // The controller answered, but without the family.
            Err(RouterError::Msg(_)) => return Err(Error::NotLoaded),
            Err(e) => {
                return Err(Error::Netlink(format!(
                    "cannot resolve the {FAMILY_NAME} family: {e}"
                )))
            }
        };
        Ok(Self { router, family })
    }

    /// Sends a `do` request and returns the reply messages.
    pub fn request<A: NlAttrType>(
        &self,
        name: &'static str,
        cmd: Cmd,
        attrs: GenlBuffer<A, Buffer>,
    ) -> Result<Vec<Genlmsghdr<Cmd, A>>> {
        let msg = GenlmsghdrBuilder::<Cmd, A, NoUserHeader>::default()
            .cmd(cmd)
            .version(FAMILY_VERSION)
            .attrs(attrs)
            .build()
            .map_err(|e| Error::Netlink(format!("cannot build {name} request: {e}")))?;
        let recv = self
            .router
            .send::<_, _, u16, Genlmsghdr<Cmd, A>>(self.family, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(|e| Error::Netlink(format!("cannot send {name}: {e}")))?;
        let mut replies = Vec::new();
        for msg in recv {
            match msg {
                Ok(m) => {
                    if let NlPayload::Payload(p) = m.nl_payload() {
                        replies.push(p.clone());
                    }
                }
                Err(RouterError::Nlmsgerr(e)) => {
                    let message = e
                        .ext_ack()
                        .iter()
                        .find(|a| u16::from(a.nla_type()) == NLMSGERR_ATTR_MSG)
                        .and_then(|a| extack_text(a.nla_payload().as_ref()));
                    return Err(Error::Kernel(KernelError {
                        request: name,
                        errno: -*e.error(),
                        message,
                    }));
                }
                Err(e) => return Err(Error::Netlink(format!("{name}: {e}"))),
            }
        }
        Ok(replies)
    }
}
