//! `tiox playground`: from nothing to a running 3 PD + 3 TiKV + 1 TiDB
//! cluster with mutual TLS on every link, printing commands that work; a
//! second start reuses the data, the certificates and the password.

use std::process::Command;

fn sibling(name: &str) -> std::path::PathBuf {
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join(name)
}

fn playground(dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(sibling("tiox"))
        .args([
            "playground",
            "--exit-when-ready",
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs a printed command line (its first word is one of our binaries).
fn run_printed(line: &str) -> (bool, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(sibling(words[0]))
        .args(&words[1..])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn printed(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with(label))
        .map(|l| l[22..].trim().to_string())
        .unwrap_or_else(|| panic!("no \"{label}\" line in:\n{stdout}"))
}

#[test]
fn playground_starts_a_mutual_tls_cluster_and_prints_working_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = playground(dir.path());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("[1/4] starting 3 PD")
            && stderr.contains("[2/4] starting 3 TiKV")
            && stderr.contains("[3/4] starting 1 TiDB"),
        "{stderr}"
    );
    assert!(
        dir.path().join("certs/ca.pem").exists() && dir.path().join("certs/mysql/ca.pem").exists()
    );
    let mysql = printed(&stdout, "MySQL ");
    assert!(
        mysql.contains("--ssl-ca") && mysql.contains("mysql/ca.pem"),
        "{mysql}"
    );
    let password = printed(&stdout, "root password");
    assert!(
        password
            .split_whitespace()
            .next()
            .is_some_and(|p| p.len() >= 8),
        "{password}"
    );

    // The printed MySQL command works (over TLS, verifying the server), with
    // the printed password; the account lives in the cluster.
    let client = ["mariadb", "mysql"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    match client {
        None if std::env::var("CI").is_ok() => panic!("no mysql client but CI is set"),
        None => eprintln!("SKIPPED the MySQL part: no mariadb/mysql client installed"),
        Some(bin) => {
            // A second, running playground is needed for a login: start it,
            // log in, stop it.
            let err_path = dir.path().join("second-start.stderr");
            let mut child = Command::new(sibling("tiox"))
                .args(["playground", "--data-dir", dir.path().to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let mut text = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let line = line.unwrap();
                text.push_str(&line);
                text.push('\n');
                if line.starts_with("logs") {
                    break;
                }
            }
            if !text.contains("MySQL ") {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the second start printed no MySQL line:\n{text}\nits stderr:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            let line = printed(&text, "MySQL ");
            let pw = password.split_whitespace().next().unwrap();
            let words: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .filter(|w| *w != "-p")
                .collect();
            let r = Command::new(bin)
                .args(&words)
                .arg(format!("--password={pw}"))
                .args([
                    "--batch",
                    "-e",
                    "SELECT CURRENT_USER(); SHOW STATUS LIKE 'Ssl_version'",
                ])
                .output()
                .unwrap();
            // SAFETY: kill(2) on our own child's pid (Ctrl-C).
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
            let out = String::from_utf8_lossy(&r.stdout);
            assert!(
                r.status.success() && out.contains("root@%") && out.contains("TLSv1."),
                "{line}\n{out}\n{}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }

    // Second start: same certificates, same data, same password.
    let ca_before = std::fs::read(dir.path().join("certs/ca.pem")).unwrap();
    let (ok, stdout2, stderr2) = playground(dir.path());
    assert!(ok, "{stdout2}\n{stderr2}");
    assert!(stderr2.contains("reusing"), "{stderr2}");
    assert_eq!(
        ca_before,
        std::fs::read(dir.path().join("certs/ca.pem")).unwrap()
    );
    assert_eq!(
        printed(&stdout2, "root password").split_whitespace().next(),
        password.split_whitespace().next()
    );
}

#[test]
fn playground_prints_ctl_commands_that_work_and_ctrl_c_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    // Ctrl-C is SIGINT to the playground; it stops its servers itself.
    let mut child = Command::new(sibling("tiox"))
        .args([
            "playground",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--pd",
            "1",
            "--kv",
            "1",
            "--db",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // On a failed assertion, still stop the playground (and so its servers).
    struct Guard(libc::pid_t);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.0, libc::SIGINT);
            }
            std::thread::sleep(std::time::Duration::from_secs(6));
        }
    }
    let guard = Guard(pid);
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("logs") {
            break;
        }
    }
    let pd_ctl = printed(&text, "pd-ctl");
    let tikv_ctl = printed(&text, "tikv-ctl");
    let (ok, out) = run_printed(&pd_ctl);
    assert!(ok && out.contains("\"state_name\""), "{pd_ctl}\n{out}");
    let (ok, out) = run_printed(&tikv_ctl);
    assert!(ok && out.contains("\"store_id\""), "{tikv_ctl}\n{out}");

    // Ctrl-C.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    std::mem::forget(guard);
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the playground did not stop within 20 s of Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "{stderr}");
    assert!(
        stderr.contains("stopped") && !stderr.contains("killed after"),
        "servers exit on Ctrl-C by themselves: {stderr}"
    );
}
