//! `vpmctl exec`: run an unmodified program as an AID.
//!
//! The program binds its fixed port as it always does; the socket hooks
//! attached to the AID's cgroup make that a bind of the AID's anonymous
//! port (see [`crate::hooks`]).  Order of work, all of it before the
//! program starts, so that a program is never started when vpm cannot
//! serve it: allocate (or find) the anonymous ports, recording the AID's
//! group as their cgroup; put the hooks in place; start the keeper; move
//! into the group; exec.
//!
//! The keeper is a detached vpmctl (`vpmctl keep`, not in the AID's
//! group, so it does not hold the group open) that lives as long as the
//! group has processes.  It keeps the hooks' map equal to the kernel's
//! allocations whoever changes them, removes the hooks if the module is
//! unloaded, and, with `--release`, releases the allocations once the
//! group's last process has exited.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::aid::Aid;
use crate::connection::Connection;
use crate::error::{Error, KernelError, Result};
use crate::hooks::{self, Lock};
use crate::mapping::{self, AddOpts};
use crate::place::{self, Place};
use crate::proto::Proto;

/// What `exec` was asked for.
#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub aid: Aid,
    pub ports: Vec<u16>,
    pub proto: Proto,
    pub wait_ms: Option<u32>,
    pub release: bool,
    pub cgroup_parent: Option<PathBuf>,
    pub cmd: Vec<OsString>,
}

/// Exit codes of a command that could not be started, as shells use them.
const NOT_EXECUTABLE: i32 = 126;
const NOT_FOUND: i32 = 127;

/// An AID that cannot name a directory of its own.
pub fn check_aid_is_a_name(aid: &Aid) -> Result<()> {
    if matches!(aid.as_str(), "." | "..") {
        return Err(Error::Input(format!(
            "AID '{aid}' cannot name a cgroup: exec needs an AID other than . and .."
        )));
    }
    Ok(())
}

/// Runs `opts.cmd` as the AID; returns only on failure, or with the exit
/// code to use when the command could not be started.
pub fn run(opts: &ExecOpts) -> Result<i32> {
    check_aid_is_a_name(&opts.aid)?;
    // A command that cannot run is found out before anything is made.
    if let Err(code) = resolve(&opts.cmd[0]) {
        return Ok(code);
    }
    let conn = Connection::open()?;
    let place = Place::current(opts.cgroup_parent.as_deref())?;
    let group = place.group(&opts.aid);
    let before = mapping::list(&conn)?;
    check_cgroups(&place, &group, &opts.aid, &opts.ports, &before)?;
    let mut created = Vec::new();
    // A wait for free ports happens before the lock (a release it waits
    // for needs the lock) and before the group exists (an interrupted
    // wait leaves nothing behind).
    if let Some(ms) = opts.wait_ms.filter(|&ms| ms > 0) {
        let wait = AddOpts {
            proto: Some(opts.proto),
            wait_ms: Some(ms),
            ..AddOpts::default()
        };
        if let Err(e) = add_all(&conn, opts, &wait, &before, &mut created) {
            undo(&conn, &opts.aid, &created);
            return Err(e);
        }
    }
    // From here to the exec, no keeper or other vpmctl changes hooks,
    // groups or releases: the allocations, the hooks and the group this
    // exec checks stay as they are until it has entered the group.
    let lock = Lock::take(&place)?;
    // Looked at again under the lock: another exec of this AID may have
    // run since (what a wait above made stays in `created`).
    let prepared = mapping::list(&conn)
        .and_then(|now| {
            check_cgroups(&place, &group, &opts.aid, &opts.ports, &now)?;
            check_hooks(&place, &group, &opts.aid)?;
            make_group(&group)?;
            let add = AddOpts {
                proto: Some(opts.proto),
                cgroup: Some(place.kernel_path(&group)),
                ..AddOpts::default()
            };
            add_all(&conn, opts, &add, &now, &mut created)
        })
        .and_then(|()| hook(&conn, &place, &group, &opts.aid))
        .and_then(|()| start_keeper(&place, opts))
        .and_then(|()| enter(&group));
    if let Err(e) = prepared {
        undo(&conn, &opts.aid, &created);
        tidy(&conn, &place, &group, &opts.aid);
        return Err(e);
    }
    drop(lock);
    drop(conn);
    // Only returns if the command could not be started.
    let err = Command::new(&opts.cmd[0]).args(&opts.cmd[1..]).exec();
    let name = opts.cmd[0].to_string_lossy();
    eprintln!("vpmctl: exec: cannot run {name}: {err}");
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        NOT_EXECUTABLE
    })
}

/// Finds CMD as execvp would; `Err` is the exit code (after saying why)
/// when it cannot be run.
fn resolve(cmd: &std::ffi::OsStr) -> std::result::Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let name = cmd.to_string_lossy();
    let candidates: Vec<PathBuf> = if cmd.as_bytes().contains(&b'/') {
        vec![PathBuf::from(cmd)]
    } else {
        // execvp's own default when PATH is unset.
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        std::env::split_paths(&path).map(|d| d.join(cmd)).collect()
    };
    let executable = |p: &PathBuf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if candidates.iter().any(executable) {
        return Ok(());
    }
    if candidates.iter().any(|p| p.exists()) {
        eprintln!("vpmctl: exec: cannot run {name}: Permission denied (not an executable file)");
        return Err(NOT_EXECUTABLE);
    }
    eprintln!("vpmctl: exec: cannot run {name}: No such file or directory (nothing was allocated)");
    Err(NOT_FOUND)
}

/// An allocation that another cgroup steers is not exec's to take over.
fn check_cgroups(
    place: &Place,
    group: &Path,
    aid: &Aid,
    ports: &[u16],
    live: &[crate::mapping::Mapping],
) -> Result<()> {
    let want = place.kernel_path(group);
    for m in live
        .iter()
        .filter(|m| &m.aid == aid && ports.contains(&m.port))
    {
        if let Some(c) = m.cgroup.as_deref().filter(|c| *c != want) {
            return Err(Error::Host(format!(
                "AID {aid}'s allocation of port {} is steered by cgroup {c}, not {want}: \
                 delete it (vpmctl del) or run exec with the --cgroup-parent it was made with",
                m.port
            )));
        }
    }
    Ok(())
}

/// Creates the AID's group (and its parents) on cgroup v2.
fn make_group(group: &Path) -> Result<()> {
    std::fs::create_dir_all(group).map_err(|e| {
        Error::Host(format!(
            "cannot create cgroup {}: {e} (exec needs root, or a delegated cgroup \
             v2 subtree given as --cgroup-parent)",
            group.display()
        ))
    })?;
    if !place::is_cgroup2(group) {
        return Err(Error::Host(format!(
            "{} is not on cgroup v2: give --cgroup-parent below the cgroup2 mount",
            group.display()
        )));
    }
    Ok(())
}

/// Allocates each port for the AID as `add` says; adds to `created` the
/// ports whose allocation did not exist before (`before`).
fn add_all(
    conn: &Connection,
    opts: &ExecOpts,
    add: &AddOpts,
    before: &[crate::mapping::Mapping],
    created: &mut Vec<u16>,
) -> Result<()> {
    for &port in &opts.ports {
        mapping::add(conn, &opts.aid, port, add)?;
        let existed = before.iter().any(|m| m.aid == opts.aid && m.port == port);
        if !existed && !created.contains(&port) {
            created.push(port);
        }
    }
    Ok(())
}

/// Refuses an exec whose AID has hooks on another group that still runs
/// processes (exec was given another parent): the command would run
/// unhooked.  Expects the [`Lock`] held.
fn check_hooks(place: &Place, group: &Path, aid: &Aid) -> Result<()> {
    if !hooks::installed(place, aid) {
        return Ok(());
    }
    match hooks::recorded(place, aid) {
        Some((old, _)) if old != group && place::populated(&old) => Err(Error::Host(format!(
            "AID {aid}'s socket hooks are on cgroup {}, which still runs processes: \
             run exec with the --cgroup-parent of that group",
            old.display()
        ))),
        Some(_) => Ok(()),
        None => Err(Error::Host(format!(
            "AID {aid}'s socket hooks in {} carry no record of their group: \
             remove that directory (rm -r) and run exec again",
            place.pin_dir(aid).display()
        ))),
    }
}

/// Installs the AID's hooks on `group`, or brings installed ones up to
/// date.  Hooks on another group ([`check_hooks`] let them through: that
/// group is gone, empty, or was removed and made again) are taken off it
/// first.  Expects the [`Lock`] held.
fn hook(conn: &Connection, place: &Place, group: &Path, aid: &Aid) -> Result<()> {
    let maps = mapping::list(conn)?;
    if hooks::installed(place, aid) {
        // An earlier vpmctl's hooks (no cooperative client programs) are
        // installed again, whole.
        if hooks::attached_to(place, aid, group) && hooks::complete(place, aid) {
            return hooks::sync_aid(place, aid, &maps);
        }
        let old = hooks::group_of(place, aid);
        hooks::detach(place, aid)?;
        if old != group {
            let _ = std::fs::remove_dir(&old);
        }
    }
    hooks::install(place, aid, group, &hooks::desired(&maps, aid))
}

/// Releases the allocations `ports` of `aid` (best effort: a failure
/// here must not hide the error being reported).
fn undo(conn: &Connection, aid: &Aid, ports: &[u16]) {
    for &p in ports {
        let _ = mapping::del(conn, aid, p);
    }
}

/// After a failed exec, with the [`Lock`] held: the AID's hooks follow
/// what is left, which removes them and their group when the AID has
/// nothing and nobody runs; a group this exec made for nothing goes.
fn tidy(conn: &Connection, place: &Place, group: &Path, aid: &Aid) {
    let Ok(maps) = mapping::list(conn) else {
        return;
    };
    if hooks::installed(place, aid) {
        let _ = hooks::sync_aid(place, aid, &maps);
    }
    let hooked_here = hooks::installed(place, aid) && hooks::group_of(place, aid) == group;
    if !hooked_here && !maps.iter().any(|m| &m.aid == aid) && !place::populated(group) {
        let _ = hooks::remove(place, aid);
        let _ = std::fs::remove_dir(group);
    }
}

/// Moves the calling process into `group`; its future children follow.
fn enter(group: &Path) -> Result<()> {
    let procs = group.join("cgroup.procs");
    // "0" is the writing process itself.
    std::fs::write(&procs, "0")
        .map_err(|e| Error::Host(format!("cannot move into cgroup {}: {e}", group.display())))
}

/// Starts the keeper, detached: `vpmctl keep --detach` starts the real
/// keeper in a process group of its own and exits at once, so the keeper
/// is not a child of the command about to be exec'd (which would have to
/// reap it).
fn start_keeper(place: &Place, opts: &ExecOpts) -> Result<()> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(keeper_args(place, opts, true))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let status = cmd
        .status()
        .map_err(|e| Error::Host(format!("cannot start the keeper (vpmctl keep): {e}")))?;
    if !status.success() {
        return Err(Error::Host(format!(
            "the keeper (vpmctl keep) failed to start: {status}"
        )));
    }
    Ok(())
}

/// The keeper's command line (after the program name).
pub fn keeper_args(place: &Place, opts: &ExecOpts, detach: bool) -> Vec<OsString> {
    let ports: &[u16] = if opts.release { &opts.ports } else { &[] };
    keep_args(
        &opts.aid,
        &place.parent,
        opts.release,
        ports,
        std::process::id(),
        detach,
    )
}

/// `vpmctl keep`'s arguments.  `pid` is the process about to exec the
/// command.
pub fn keep_args(
    aid: &Aid,
    parent: &Path,
    release: bool,
    ports: &[u16],
    pid: u32,
    detach: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["keep".into(), "--aid".into(), aid.as_str().into()];
    a.push("--cgroup-parent".into());
    a.push(parent.as_os_str().to_owned());
    a.push("--pid".into());
    a.push(pid.to_string().into());
    if release {
        a.push("--release".into());
        for p in ports {
            a.push("--port".into());
            a.push(p.to_string().into());
        }
    }
    if detach {
        a.push("--detach".into());
    }
    a
}

/// `vpmctl keep --detach`: start the keeper in its own process group and
/// return.  The keeper keeps standard error, so that what goes wrong
/// shows where the command's own errors do.
pub fn detach(args: Vec<OsString>) -> Result<()> {
    Command::new("/proc/self/exe")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Host(format!("cannot start the keeper: {e}")))?;
    Ok(())
}

/// How often the keeper looks at the group when no event wakes it.
const KEEPER_TICK: Duration = Duration::from_secs(1);

/// Least time between two of the keeper's syncs: a namespace busy with
/// changes costs it a dump per this, not per change.
const KEEPER_SPACING: Duration = Duration::from_millis(200);

/// The longest the keeper waits for `exec` to enter the group (it starts
/// before, so that it is not in the group itself).
const KEEPER_GRACE: Duration = Duration::from_secs(30);

/// The keeper (see the module's documentation).  Errors while it follows
/// are reported and it carries on: giving up would leave the hooks and
/// the group behind for good.
pub fn keep(aid: &Aid, parent: &Path, release: bool, ports: &[u16], pid: u32) -> Result<()> {
    let place = Place::current(Some(parent))?;
    let group = place.group(aid);
    leave_vpm_groups(&place);
    let conn = Connection::open()?;
    let watch = conn.watch()?;
    wait_for_entry(&place, &group, pid);
    let report = |e: Error| eprintln!("vpmctl: keeper of AID {aid}: {e}");
    // Whatever changed between exec's look and the subscription.
    let mut woken = true;
    let lock = loop {
        while place::populated(&group) {
            if woken {
                match follow(&conn, &place, aid) {
                    Ok(true) => {}
                    // vpm went away, and the hooks with it: binds of the
                    // fixed port are the kernel's own again.
                    Ok(false) => return outlive_unload(&place, aid, &group),
                    Err(e) => report(e),
                }
                std::thread::sleep(KEEPER_SPACING);
            }
            woken = match watch.wait(KEEPER_TICK) {
                Ok(w) => w,
                Err(e) => {
                    report(e);
                    std::thread::sleep(KEEPER_TICK);
                    false
                }
            };
        }
        let lock = Lock::take(&place)?;
        // Under the lock, a new exec of the AID has either entered the
        // group already (keep following) or will find what this leaves.
        if !place::populated(&group) {
            break lock;
        }
        drop(lock);
        woken = true;
    };
    if release && alive(&conn) {
        for &p in ports {
            match mapping::del(&conn, aid, p) {
                Ok(()) => {}
                Err(Error::Kernel(KernelError { errno, .. })) if errno == libc::ENOENT => {}
                Err(e) => report(e),
            }
        }
    }
    match follow_locked(&conn, &place, aid) {
        Ok(true) => Ok(()),
        Ok(false) => {
            drop(lock);
            outlive_unload(&place, aid, &group)
        }
        Err(e) => Err(e),
    }
}

/// A keeper started from inside one of vpm's groups (a command that runs
/// exec again) would keep that group populated for as long as it lives:
/// it moves to the cgroup2 root instead.
fn leave_vpm_groups(place: &Place) {
    let Some(own) = place::own_cgroup() else {
        return;
    };
    let own = place.cgroup2.join(own.trim_start_matches('/'));
    if own.starts_with(&place.parent) {
        if let Err(e) = std::fs::write(place.cgroup2.join("cgroup.procs"), "0") {
            eprintln!(
                "vpmctl: keeper: cannot leave {} for the cgroup2 root ({e}): that group \
                 stays populated while the keeper runs",
                own.display()
            );
        }
    }
}

/// Waits until process `pid` (the exec) has entered `group`, or is gone.
fn wait_for_entry(place: &Place, group: &Path, pid: u32) {
    let want = format!("0::{}", place.kernel_path(group));
    let start = std::time::Instant::now();
    while start.elapsed() < KEEPER_GRACE && !place::populated(group) {
        match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(t) if t.lines().any(|l| l == want) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return,
        }
    }
}

/// Whether the vpm family `conn` resolved is still there.
fn alive(conn: &Connection) -> bool {
    matches!(conn.family_alive(), Ok(true))
}

/// Brings the AID's hooks in line with the kernel (see
/// [`hooks::sync_aid`]); `Ok(false)` if vpm is gone, in which case the
/// hooks are removed.
fn follow(conn: &Connection, place: &Place, aid: &Aid) -> Result<bool> {
    let _lock = Lock::take(place)?;
    follow_locked(conn, place, aid)
}

/// [`follow`] with the [`Lock`] held: the allocations are read under it,
/// so no exec's newer hooks are overwritten with an older list.
fn follow_locked(conn: &Connection, place: &Place, aid: &Aid) -> Result<bool> {
    let maps = if alive(conn) {
        mapping::list(conn).map(Some)
    } else {
        Ok(None)
    };
    match maps {
        Ok(Some(maps)) => hooks::sync_aid(place, aid, &maps).map(|()| true),
        Ok(None) => hooks::remove(place, aid).map(|()| false),
        Err(_) if !alive(conn) => hooks::remove(place, aid).map(|()| false),
        Err(e) => Err(e),
    }
}

/// After the module went away (and the hooks with it): the group, which
/// may still have processes, is removed once they are gone, with the
/// directories above it that vpm made.
fn outlive_unload(place: &Place, aid: &Aid, group: &Path) -> Result<()> {
    while place::populated(group) {
        std::thread::sleep(KEEPER_TICK);
    }
    let _lock = Lock::take(place)?;
    // No pins left, so this only removes the empty directories, unless a
    // new exec of this AID has hooked it again meanwhile.
    if !hooks::installed(place, aid) {
        hooks::remove(place, aid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(release: bool) -> ExecOpts {
        ExecOpts {
            aid: "blue".parse().unwrap(),
            ports: vec![9000, 53],
            proto: Proto::Both,
            wait_ms: None,
            release,
            cgroup_parent: None,
            cmd: vec!["true".into()],
        }
    }

    fn place(scope: &str) -> Place {
        Place::new(
            "/sys/fs/cgroup".into(),
            Path::new("/sys/fs/cgroup/vpm"),
            Path::new("/sys/fs/bpf"),
            scope,
        )
    }

    #[test]
    fn keeper_gets_the_parent_without_the_scope() {
        for scope in ["host", "net-42"] {
            let a = keeper_args(&place(scope), &opts(false), false);
            let pid = std::process::id().to_string();
            let want = [
                "keep",
                "--aid",
                "blue",
                "--cgroup-parent",
                "/sys/fs/cgroup/vpm",
                "--pid",
                &pid,
            ];
            assert_eq!(a, want.map(OsString::from));
        }
    }

    #[test]
    fn keeper_releases_only_when_asked() {
        let a = keeper_args(&place("host"), &opts(true), true);
        let a: Vec<_> = a.iter().map(|s| s.to_str().unwrap()).collect();
        let pid = std::process::id().to_string();
        assert_eq!(
            a,
            [
                "keep",
                "--aid",
                "blue",
                "--cgroup-parent",
                "/sys/fs/cgroup/vpm",
                "--pid",
                &pid,
                "--release",
                "--port",
                "9000",
                "--port",
                "53",
                "--detach"
            ]
        );
    }

    #[test]
    fn dot_aids_cannot_name_a_group() {
        for bad in [".", ".."] {
            let e = check_aid_is_a_name(&bad.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains("other than . and .."), "{e}");
        }
        check_aid_is_a_name(&"..a".parse().unwrap()).unwrap();
    }
}
