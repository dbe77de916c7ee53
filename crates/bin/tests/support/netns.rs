//! Hosts for the end-to-end tests: each store in its own Linux network
//! namespace with its own address, joined by veth pairs to one bridge, so
//! that a test can cut a host off the network and heal it.
//!
//! ```text
//!  test process (client) + pd-server, in a private netns made by `unshare --net`
//!    bridge tiox0 10.77.0.1/24
//!      ├─ veth tioxv0 ── eth0 10.77.0.10  netns tiox-PID-kv0  tikv-server
//!      ├─ veth tioxv1 ── eth0 10.77.0.11  netns tiox-PID-kv1  tikv-server
//!      └─ veth tioxv2 ── eth0 10.77.0.12  netns tiox-PID-kv2  tikv-server
//! ```
//!
//! [`isolate`] re-runs the calling test inside `unshare --net --mount`: the
//! bridge, the veths and the namespaces then live in a network namespace
//! of their own (the host's interfaces, routes and firewall are neither
//! seen nor touched, and concurrent runs cannot collide), and all of it
//! disappears when that process exits, even if it is killed. [`Net`]'s
//! `Drop` deletes the namespaces it made anyway (their names are files in
//! the shared `/run/netns`).
//!
//! Needs root, `ip` (iproute2) and `unshare` (util-linux); without them the
//! test prints `SKIPPED` and passes (under `CI=true` a missing tool fails
//! it). A kernel or container that refuses new namespaces skips it too.
//!
//! A test using it declares `#[path = "support/cluster.rs"] mod cluster;`
//! and `#[path = "support/netns.rs"] mod netns;`.

#![allow(dead_code)]

use std::process::Command;

use super::cluster::Host;

/// Set in the re-run child so that it runs the test body.
const CHILD_ENV: &str = "TIOX_NETNS_CHILD";
/// The bridge's address; store `i` is `SUBNET.(10 + i)`.
const SUBNET: &str = "10.77.0";

/// Says that the test is skipped, on stderr itself: libtest captures
/// `eprintln!` of a passing test, and a skip must be seen.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Decides where the test body runs. In the test process: skips loudly
/// (returns false) without root, `ip` or `unshare`; otherwise re-runs this
/// test binary, filtered to `test`, inside `unshare --net --mount` (one such
/// test at a time), panics
/// if that run failed, and returns false. In that child: returns true, and
/// the caller runs the body.
pub fn isolate(test: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "needs root to make network namespaces");
        return false;
    }
    for tool in ["ip", "unshare"] {
        if !have(tool) {
            if std::env::var_os("CI").is_some() {
                panic!("{tool} is not installed but CI is set; .ci/run must install it");
            }
            skip(
                test,
                &format!("`{tool}` is not installed (apt-get install iproute2 util-linux)"),
            );
            return false;
        }
    }
    let probe = Command::new("unshare")
        .args(["--net", "--mount", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            skip(
                test,
                &format!("cannot make a network namespace (`unshare --net --mount`: {why})"),
            );
            return false;
        }
    }
    // One isolated test at a time: each runs a cluster of four processes.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "{test} failed inside its network namespace ({status}); its output is above"
    );
    false
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The bridge and one namespace per host; everything is deleted on drop.
pub struct Net {
    namespaces: Vec<String>,
}

impl Net {
    /// Makes the bridge (with the hub address, [`Net::hub_ip`]) and `n`
    /// namespaces, each with a veth on the bridge and its own address.
    /// Call it inside [`isolate`]'s child. An error means namespaces cannot
    /// be made here (the caller skips).
    pub fn new(n: usize) -> Result<Net, String> {
        let mut net = Net {
            namespaces: Vec::new(),
        };
        ip(&["link", "set", "lo", "up"])?;
        ip(&["link", "add", "tiox0", "type", "bridge"])?;
        ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", "tiox0"])?;
        ip(&["link", "set", "tiox0", "up"])?;
        for i in 0..n {
            let ns = format!("tiox-{}-kv{i}", std::process::id());
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let veth = format!("tioxv{i}");
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", "tiox0", "up"])?;
            let addr = format!("{}/24", net.ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The bridge's address, where PD listens and the test's client sits.
    pub fn hub_ip(&self) -> String {
        format!("{SUBNET}.1")
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("{SUBNET}.{}", 10 + i)
    }

    /// The hosts, for [`super::cluster::Options::kv_hosts`].
    pub fn hosts(&self) -> Vec<Host> {
        self.namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| Host {
                ip: self.ip(i),
                exec_prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()],
            })
            .collect()
    }

    /// Cuts host `i` off: its veth's bridge end goes down, so nothing
    /// reaches it or leaves it (its processes keep running).
    pub fn partition(&self, i: usize) {
        ip(&["link", "set", &format!("tioxv{i}"), "down"]).unwrap();
    }

    /// Undoes [`Net::partition`].
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &format!("tioxv{i}"), "up"]).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it
        // the pair.
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        let _ = ip(&["link", "delete", "tiox0"]);
    }
}
