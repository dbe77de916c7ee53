//! `tiox cert init | issue | revoke | inspect`: the certificate steps of the TLS
//! how-to in one tool, writing files in the layout the sample configs use.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tiox_security::certgen::{self, CertAuthority, InitOptions, KeyType, Profile, Spec, Validity};
use tiox_security::inspect::{self, format_time, CertInfo, EXPIRY_WARNING_DAYS};

#[derive(Subcommand)]
pub enum CertCommand {
    /// Write a cluster CA, a certificate per component, the shared client
    /// certificate, and a separate MySQL-facing set under DIR/mysql/.
    Init(InitArgs),
    /// Issue one more certificate from an existing CA (tiox's, openssl's or
    /// cfssl's; RSA or EC keys in PKCS#1, PKCS#8 or SEC1).
    Issue(IssueArgs),
    /// Write (or extend) a certificate revocation list signed by the CA,
    /// naming the given certificates; point `crl-path` (cluster) or
    /// `ssl-crl` (MySQL port) at it. Running components reload it.
    Revoke(RevokeArgs),
    /// Print what certificates say (subject, SANs, usages, validity,
    /// fingerprint) and check key pairs. Exits non-zero for an expired or
    /// not-yet-valid certificate, or a key that matches no given certificate.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Hosts (IPs and DNS names) every server certificate is valid for,
    /// comma separated. Include every address components advertise.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Key algorithm: ecdsa-p256, ecdsa-p384 or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    key_type: KeyType,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct IssueArgs {
    /// The CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The CA's private key (PEM).
    #[arg(long)]
    ca_key: PathBuf,
    /// Common name (e.g. tikv-server, or a client's name for allow-lists).
    #[arg(long)]
    cn: String,
    /// Hosts (IPs and DNS names, or URIs) for the SANs, comma separated.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// server (server+client auth, for components), client (client auth),
    /// or mysql-server (server auth, for the MySQL port).
    #[arg(long, default_value = "server")]
    profile: Profile,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Key algorithm: ecdsa-p256, ecdsa-p384 or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    key_type: KeyType,
    /// Output prefix: writes PREFIX.pem and PREFIX-key.pem [default: ./CN].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The CA certificate (PEM) that issued the certificates.
    #[arg(long)]
    ca: PathBuf,
    /// The CA's private key (PEM).
    #[arg(long)]
    ca_key: PathBuf,
    /// The CRL file to write; if it exists, its entries are kept.
    #[arg(long)]
    out: PathBuf,
    /// Days until the list's nextUpdate.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Certificates (PEM) to revoke.
    certs: Vec<PathBuf>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Certificate and key files (PEM). A certificate's `-key.pem` twin
    /// beside it is checked too.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Runs a cert subcommand; returns the exit code.
pub fn run(cmd: CertCommand) -> i32 {
    let result = match cmd {
        CertCommand::Init(a) => init(a),
        CertCommand::Issue(a) => issue(a),
        CertCommand::Revoke(a) => revoke(a),
        CertCommand::Inspect(a) => return inspect_files(&a.files),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let written = certgen::init_dir(
        &a.dir,
        &InitOptions {
            hosts: a.hosts.clone(),
            days: a.days,
            key_type: a.key_type,
            force: a.force,
        },
    )?;
    println!("Wrote {} files to {}:", written.len(), a.dir.display());
    for w in &written {
        println!("  {:<40} {}", w.path.display(), w.what);
    }
    println!(
        "\nServer certificates are valid for: {}\nValid for {} days. Keys are 0600. Keep ca-key.pem and mysql/ca-key.pem offline.",
        a.hosts.join(", "),
        a.days
    );
    Ok(())
}

fn issue(a: IssueArgs) -> anyhow::Result<()> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), inspect::describe_io_error(&e)))
    };
    let ca = CertAuthority::from_pem(&read(&a.ca)?, &read(&a.ca_key)?)?;
    let spec = Spec {
        cn: a.cn.clone(),
        hosts: a.hosts.clone(),
        profile: a.profile,
        validity: Validity::Days(a.days),
        key_type: a.key_type,
    };
    let issued = ca.issue(&spec)?;
    let prefix = a.out.unwrap_or_else(|| PathBuf::from(&a.cn));
    for w in certgen::write_pair(&prefix, &issued, a.force)? {
        println!("wrote {} ({})", w.path.display(), w.what);
    }
    Ok(())
}

fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), inspect::describe_io_error(&e)))
    };
    let text = |p: &Path| read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    let ca = CertAuthority::from_pem(&text(&a.ca)?, &text(&a.ca_key)?)?;
    let mut certs = Vec::new();
    for p in &a.certs {
        let ders = inspect::pem_certs_from_bytes(&read(p)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let info =
            CertInfo::from_der(&ders[0]).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        println!(
            "revoking {} (serial {}, subject {})",
            p.display(),
            info.serial,
            info.subject
        );
        certs.push(ders[0].clone());
    }
    let previous = if a.out.exists() {
        Some(read(&a.out)?)
    } else {
        None
    };
    let pem = ca.revoke(&certs, previous.as_deref(), a.days)?;
    // Write beside and rename, so a component reloading it never sees half a file.
    let tmp = a.out.with_extension("tmp");
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, &a.out)?;
    println!("wrote {} (valid {} days)", a.out.display(), a.days);
    Ok(())
}

/// Prints every certificate and key pairing; returns the exit code.
fn inspect_files(files: &[PathBuf]) -> i32 {
    let now = time::OffsetDateTime::now_utc();
    let mut failed = false;
    let mut certs: Vec<(PathBuf, CertInfo)> = Vec::new();
    let mut keys: Vec<PathBuf> = Vec::new();
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                println!("{}: {}", f.display(), inspect::describe_io_error(&e));
                failed = true;
                continue;
            }
        };
        if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
            keys.push(f.clone());
            continue;
        }
        match inspect::pem_certs_from_bytes(&bytes) {
            Ok(ders) => {
                for (i, der) in ders.iter().enumerate() {
                    match CertInfo::from_der(der) {
                        Ok(info) => {
                            println!("{} [{}]:\n{info}", f.display(), i);
                            let days = info.days_left(now);
                            if info.is_expired_at(now) {
                                println!(
                                    "  status:         EXPIRED on {}",
                                    format_time(info.not_after)
                                );
                                failed = true;
                            } else if info.is_not_yet_valid_at(now) {
                                println!(
                                    "  status:         NOT YET VALID (from {})",
                                    format_time(info.not_before)
                                );
                                failed = true;
                            } else if days < EXPIRY_WARNING_DAYS {
                                println!("  status:         WARNING: expires in {days} days; rotate it soon");
                            } else {
                                println!("  status:         ok, valid for {days} more days");
                            }
                            if i == 0 {
                                certs.push((f.clone(), info));
                            }
                        }
                        Err(e) => {
                            println!("{} [{}]: {e}", f.display(), i);
                            failed = true;
                        }
                    }
                }
            }
            Err(e) => {
                println!("{}: {e}", f.display());
                failed = true;
            }
        }
    }
    // A certificate's -key.pem twin is checked too.
    for (path, _) in &certs {
        if let Some(twin) = twin_key(path) {
            if twin.exists() && !keys.contains(&twin) {
                keys.push(twin);
            }
        }
    }
    for key in &keys {
        let spki = std::fs::read(key)
            .map_err(|e| inspect::describe_io_error(&e))
            .and_then(|b| inspect::private_key_spki(&b));
        match spki {
            Ok(Some(spki)) => {
                match certs.iter().find(|(_, c)| c.spki_der == spki) {
                    Some((cert, _)) => {
                        println!("{}: private key matches {}", key.display(), cert.display())
                    }
                    None if certs.is_empty() => println!(
                        "{}: private key (no certificate given to pair with)",
                        key.display()
                    ),
                    None => {
                        println!("{}: MISMATCH: this private key belongs to none of the given certificates", key.display());
                        failed = true;
                    }
                }
            }
            Ok(None) => {
                println!("{}: no usable private key found", key.display());
                failed = true;
            }
            Err(e) => {
                println!("{}: {e}", key.display());
                failed = true;
            }
        }
    }
    i32::from(failed)
}

fn twin_key(cert: &Path) -> Option<PathBuf> {
    let stem = cert.file_stem()?.to_string_lossy().to_string();
    Some(cert.with_file_name(format!("{stem}-key.pem")))
}
