//! The TLS how-to, step by step, as an operator follows it:
//!
//! 1. certificates made by the `openssl` command line in the how-to's shape
//!    (a CA; server certificates with server AND client auth and the hosts as
//!    SANs; one client certificate with client auth; and a separate set for
//!    MySQL clients),
//! 2. each component configured with the how-to's `[security]` table,
//!    verbatim key names, in its TOML file,
//! 3. `pd-ctl` and `tikv-ctl` exactly as the how-to runs them,
//! 4. a MySQL client over TLS to tidb-server, which reaches the cluster
//!    over mutual TLS with its `cluster-ssl-*` certificate.
//!
//! Needs `openssl` (and a mysql client for step 4): `.ci/run` installs them;
//! elsewhere the test is skipped loudly.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "../../security/tests/common/openssl_cli.rs"]
mod openssl_cli;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{bin, free_port, http_get, Proc};
use openssl_cli::{have_openssl, openssl};
use tiox_security::{ClientTls, Component, SecurityConfig};

/// A CA and certificates in the shape of the how-to's cfssl profiles.
fn make_certs(d: &Path, ca: &str) {
    openssl(d, &["genrsa", "-out", &format!("{ca}-key.pem"), "2048"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{ca}-key.pem"),
            "-days",
            "365",
            "-subj",
            &format!("/CN={ca}"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
}

fn sign(d: &Path, ca: &str, name: &str, ext: &str) {
    openssl(d, &["genrsa", "-out", &format!("{name}-key.pem"), "2048"]);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}-key.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "365",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

const SERVER: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
const CLIENT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
const MYSQL_SERVER: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";

fn run(name: &str, args: &[String]) -> (bool, String) {
    let out = Command::new(bin(name)).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn howto_walkthrough_with_openssl_certificates_and_verbatim_security_tables() {
    if !have_openssl("howto_walkthrough") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    let p = |f: &str| d.join(f).display().to_string();

    // 1. Certificates.
    make_certs(d, "ca");
    for s in ["pd-server", "tikv-server", "tidb-server"] {
        sign(d, "ca", s, SERVER);
    }
    sign(d, "ca", "client", CLIENT);
    make_certs(d, "mysql-ca");
    sign(d, "mysql-ca", "mysql-server", MYSQL_SERVER);

    // 2. Configuration files with the how-to's [security] tables.
    let (pd_port, peer_port) = (free_port(), free_port());
    std::fs::write(
        d.join("pd.toml"),
        format!(
            "name = \"pd1\"\ndata-dir = \"{}\"\nclient-urls = \"https://127.0.0.1:{pd_port}\"\npeer-urls = \"https://127.0.0.1:{peer_port}\"\n\n[security]\n# Path of file that contains list of trusted SSL CAs. If set, following four settings shouldn't be empty\ncacert-path = \"{}\"\n# Path of file that contains X509 certificate in PEM format.\ncert-path = \"{}\"\n# Path of file that contains X509 key in PEM format.\nkey-path = \"{}\"\n",
            p("pd-data"),
            p("ca.pem"),
            p("pd-server.pem"),
            p("pd-server-key.pem")
        ),
    )
    .unwrap();
    let (kv_port, kv_status) = (free_port(), free_port());
    std::fs::write(
        d.join("tikv.toml"),
        format!(
            "[server]\naddr = \"127.0.0.1:{kv_port}\"\nstatus-addr = \"127.0.0.1:{kv_status}\"\n[pd]\nendpoints = [\"https://127.0.0.1:{pd_port}\"]\n[storage]\ndata-dir = \"{}\"\n\n[security]\n# set the path for certificates. Empty string means disabling secure connections.\nca-path = \"{}\"\ncert-path = \"{}\"\nkey-path = \"{}\"\n",
            p("tikv-data"),
            p("ca.pem"),
            p("tikv-server.pem"),
            p("tikv-server-key.pem")
        ),
    )
    .unwrap();
    let (db_port, db_status) = (free_port(), free_port());
    std::fs::write(
        d.join("tidb.toml"),
        format!(
            "host = \"127.0.0.1\"\nport = {db_port}\nstore = \"tikv\"\npath = \"127.0.0.1:{pd_port}\"\ndata-dir = \"{}\"\n\n[status]\nstatus-host = \"127.0.0.1\"\nstatus-port = {db_status}\n\n[security]\n# Path of file that contains list of trusted SSL CAs for connection with cluster components.\ncluster-ssl-ca = \"{}\"\n# Path of file that contains X509 certificate in PEM format for connection with cluster components.\ncluster-ssl-cert = \"{}\"\n# Path of file that contains X509 key in PEM format for connection with cluster components.\ncluster-ssl-key = \"{}\"\nssl-ca = \"{}\"\nssl-cert = \"{}\"\nssl-key = \"{}\"\n",
            p("tidb-data"),
            p("ca.pem"),
            p("tidb-server.pem"),
            p("tidb-server-key.pem"),
            p("mysql-ca.pem"),
            p("mysql-server.pem"),
            p("mysql-server-key.pem")
        ),
    )
    .unwrap();

    let _pd = Proc::spawn(
        "pd",
        &bin("pd-server"),
        &["--config".into(), p("pd.toml")],
        d.join("pd.log"),
    );
    let _kv = Proc::spawn(
        "kv",
        &bin("tikv-server"),
        &["--config".into(), p("tikv.toml")],
        d.join("kv.log"),
    );
    let tls = std::sync::Arc::new(
        ClientTls::new(
            SecurityConfig::from_paths(&p("ca.pem"), &p("client.pem"), &p("client-key.pem"))
                .validate(Component::Tiox)
                .unwrap()
                .unwrap(),
        )
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, body)) = http_get(
            &format!("127.0.0.1:{pd_port}"),
            "/pd/api/v1/regions",
            Some(tls.clone()),
        )
        .await
        {
            if body.contains("\"leader\":{") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster not up\n{}\n{}",
            std::fs::read_to_string(d.join("pd.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("kv.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 3. The how-to's commands, verbatim.
    let (ok, out) = run(
        "pd-ctl",
        &[
            "-u".into(),
            format!("https://127.0.0.1:{pd_port}"),
            "--cacert".into(),
            p("ca.pem"),
            "--cert".into(),
            p("client.pem"),
            "--key".into(),
            p("client-key.pem"),
            "store".into(),
        ],
    );
    assert!(
        ok && (out.contains("\"state_name\": \"Up\"") || out.contains("\"state_name\":\"Up\"")),
        "{out}"
    );
    let (ok, out) = run(
        "tikv-ctl",
        &[
            format!("--host=127.0.0.1:{kv_port}"),
            format!("--ca-path={}", p("ca.pem")),
            format!("--cert-path={}", p("client.pem")),
            format!("--key-path={}", p("client-key.pem")),
        ],
    );
    assert!(ok && out.contains("\"store_id\""), "{out}");

    // 4. TiDB on the cluster; a MySQL client over TLS verifying the server.
    let init = Command::new(bin("tidb-server"))
        .args(["--config", &p("tidb.toml"), "--initialize-insecure"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _db = Kill(init);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", db_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "tidb-server did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = ["mariadb", "mysql"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(mysql) = client else {
        if std::env::var("CI").is_ok() {
            panic!("no mysql client but CI is set");
        }
        eprintln!("SKIPPED step 4: no mariadb/mysql client");
        return;
    };
    let out = Command::new(mysql)
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{db_port}"),
            "-uroot",
            &format!("--ssl-ca={}", p("mysql-ca.pem")),
            "--ssl-verify-server-cert",
            "--batch",
            "-e",
            "SHOW STATUS LIKE 'Ssl_version'",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("TLSv1."),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
