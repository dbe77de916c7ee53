//! `tidb-server`: the MySQL-protocol front end of tiox.
//!
//! Startup: flags over the `--config` file -> `TidbConfig::validate()` (any
//! problem, e.g. a bad certificate, stops the server: it never starts
//! without the TLS it was asked for) -> the user store in `--data-dir`
//! (bootstrapped by `--initialize-secure|--initialize-insecure`) -> the
//! MySQL port and the status port.
//!
//! The SQL engine (tables, transactions) runs on the store picked by
//! `tiox_sql::store::Store`:
//! - `--store=tikv --path=PD` connects to the cluster over mutual TLS
//!   (`[security] cluster-ssl-*`), keeps the accounts there, shared by every
//!   tidb-server, and needs no directory of its own;
//! - `--store=unistore --path=DIR` (the default store, as in TiDB) runs the
//!   embedded store in this process, on disk at DIR (a restart keeps the
//!   data); without `--path` the store is temporary (`DATA_DIR/temporary-store`,
//!   removed at exit). Accounts are kept in `--data-dir` (default: DIR),
//!   this server only.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tiox_sql::config::TidbConfig;
use tiox_sql::store::Store;
use tiox_sql::users::{FileUserStore, UserRecord, UserStore};

/// The temporary store of `--store=unistore` without `--path`, inside the
/// data directory (cleared at start: a killed server leaves it behind).
const TEMPORARY_STORE: &str = "temporary-store";

#[derive(Parser, Debug)]
#[command(
    name = "tidb-server",
    version,
    about = "tiox tidb-server: the MySQL protocol front end, secure by default"
)]
struct Args {
    /// Config file (TOML, TiDB key names); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// MySQL port.
    #[arg(short = 'P', long = "port")]
    port: Option<u16>,
    /// MySQL listen address.
    #[arg(long)]
    host: Option<String>,
    /// Status (HTTP) port.
    #[arg(long = "status")]
    status: Option<u16>,
    /// Status listen address.
    #[arg(long = "status-host")]
    status_host: Option<String>,
    /// Turn the status port off.
    #[arg(long = "report-status", value_parser = clap::value_parser!(bool))]
    report_status: Option<bool>,
    /// Storage: unistore (embedded, the default) or tikv (a cluster).
    #[arg(long)]
    store: Option<String>,
    /// PD endpoints for --store=tikv; the store's directory for
    /// --store=unistore (none: a temporary store).
    #[arg(long)]
    path: Option<String>,
    /// Directory for this server's accounts with --store=unistore
    /// (default: --path).
    #[arg(long = "data-dir")]
    data_dir: Option<String>,
    /// Bootstrap the data directory with root@'%' and a random password,
    /// printed once on standard output.
    #[arg(long = "initialize-secure", conflicts_with = "initialize_insecure")]
    initialize_secure: bool,
    /// Bootstrap with root@'%' and NO password (tests only).
    #[arg(long = "initialize-insecure")]
    initialize_insecure: bool,
    /// CA for MySQL client certificates.
    #[arg(long = "ssl-ca")]
    ssl_ca: Option<String>,
    /// Revocation list for MySQL client certificates (PEM or DER).
    #[arg(long = "ssl-crl")]
    ssl_crl: Option<String>,
    /// Certificate offered to MySQL clients.
    #[arg(long = "ssl-cert")]
    ssl_cert: Option<String>,
    /// Its private key.
    #[arg(long = "ssl-key")]
    ssl_key: Option<String>,
    /// Refuse plaintext MySQL logins (error 3159).
    #[arg(long = "require-secure-transport", value_parser = clap::value_parser!(bool), num_args = 0..=1, default_missing_value = "true")]
    require_secure_transport: Option<bool>,
    /// Lowest TLS version for MySQL clients: TLSv1.2 or TLSv1.3.
    #[arg(long = "tls-version")]
    tls_version: Option<String>,
    /// Cluster CA.
    #[arg(long = "cluster-ssl-ca")]
    cluster_ssl_ca: Option<String>,
    /// Cluster certificate.
    #[arg(long = "cluster-ssl-cert")]
    cluster_ssl_cert: Option<String>,
    /// Cluster key.
    #[arg(long = "cluster-ssl-key")]
    cluster_ssl_key: Option<String>,
    /// Reach PD and TiKV without TLS, on purpose ([security] insecure).
    /// With --store=tikv and no --cluster-ssl-*, tidb-server refuses to
    /// start without it.
    #[arg(long)]
    insecure: bool,
    /// Largest packet accepted (bytes).
    #[arg(long = "max-allowed-packet")]
    max_allowed_packet: Option<u64>,
    /// Most MySQL connections at once (0: no limit).
    #[arg(long = "max-server-connections")]
    max_server_connections: Option<usize>,
}

fn apply(args: &Args, c: &mut TidbConfig) {
    macro_rules! set {
        ($from:expr, $to:expr) => {
            if let Some(v) = $from.clone() {
                $to = v;
            }
        };
    }
    set!(args.port, c.port);
    set!(args.host, c.host);
    set!(args.status, c.status.status_port);
    set!(args.status_host, c.status.status_host);
    set!(args.report_status, c.status.report_status);
    set!(args.store, c.store);
    set!(args.path, c.path);
    set!(args.data_dir, c.data_dir);
    set!(args.ssl_ca, c.security.ssl_ca);
    set!(args.ssl_crl, c.security.ssl_crl);
    set!(args.ssl_cert, c.security.ssl_cert);
    set!(args.ssl_key, c.security.ssl_key);
    set!(
        args.require_secure_transport,
        c.security.require_secure_transport
    );
    set!(args.tls_version, c.security.tls_version);
    set!(args.cluster_ssl_ca, c.security.cluster_ssl_ca);
    set!(args.cluster_ssl_cert, c.security.cluster_ssl_cert);
    set!(args.cluster_ssl_key, c.security.cluster_ssl_key);
    c.security.insecure |= args.insecure;
    set!(args.max_allowed_packet, c.max_allowed_packet);
    set!(args.max_server_connections, c.max_server_connections);
}

fn bootstrap(
    store: &dyn UserStore,
    initialized: bool,
    secure: bool,
    what: &str,
) -> anyhow::Result<()> {
    if initialized {
        anyhow::bail!(
            "tidb-server: --initialize-{}: {what} is already initialized (it holds accounts). \
             Fix: start without --initialize-*, or use an empty --data-dir / cluster",
            if secure { "secure" } else { "insecure" },
        );
    }
    let password = if secure {
        tiox_sql::auth::random_password()
    } else {
        String::new()
    };
    let root = UserRecord::root(tiox_sql::auth::native_hash(&password));
    store
        .update(&mut |users| {
            users.push(root.clone());
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("tidb-server: cannot initialize the user store: {e}"))?;
    if secure {
        // Printed once, on stdout only; never logged.
        println!("tidb-server: a temporary password is generated for root@'%': {password}");
        println!("tidb-server: change it with: ALTER USER 'root'@'%' IDENTIFIED BY '...';");
    } else {
        tracing::warn!("--initialize-insecure: root@'%' has NO password; use this for tests only");
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => TidbConfig::from_file(p)?,
        None => TidbConfig::default(),
    };
    apply(&args, &mut config);
    let v = config.validate()?;
    let store = if config.store == "tikv" {
        if v.cluster_tls.is_none() {
            tracing::warn!(
                "!!! --insecure: [security] cluster-ssl-* are not set: the links to PD and TiKV at {} are PLAINTEXT !!!",
                v.pd_endpoints.join(",")
            );
        }
        Store::cluster(&v.pd_endpoints, v.cluster_tls.clone())
            .await
            .map_err(|e| anyhow::anyhow!("tidb-server: {e}"))?
    } else {
        match &v.unistore_path {
            Some(dir) => Store::embedded(dir),
            None => {
                let scratch = v.data_dir.join(TEMPORARY_STORE);
                tracing::warn!(
                    "no --path: tables are kept in a temporary store at {} that is removed at exit; \
                     give --path DIR to keep them",
                    scratch.display()
                );
                Store::temporary(Some(&scratch))
            }
        }
        .map_err(|e| anyhow::anyhow!("tidb-server: {e}"))?
    };
    let users: Arc<dyn UserStore> = if let Store::Cluster(_) = &store {
        // Accounts live in the cluster: every tidb-server sees the same users.
        let users = tiox_sql::cluster_users::ClusterUserStore::new(store.txn());
        let initialized = !users.load()?.is_empty();
        if args.initialize_secure || args.initialize_insecure {
            bootstrap(
                &users,
                initialized,
                args.initialize_secure,
                "the cluster's account table",
            )?;
        } else if !initialized {
            anyhow::bail!(
                "tidb-server: the cluster at {} holds no accounts yet. Fix: start one tidb-server once with \
                 --initialize-secure (a random root password is printed) or --initialize-insecure (tests only)",
                v.pd_endpoints.join(",")
            );
        }
        tracing::info!(pd = %v.pd_endpoints.join(","), "accounts are kept in the cluster (shared by every tidb-server)");
        Arc::new(users)
    } else {
        let users = FileUserStore::open(&v.data_dir)?;
        if args.initialize_secure || args.initialize_insecure {
            let initialized = users.initialized();
            let what = users.path().display().to_string();
            bootstrap(&users, initialized, args.initialize_secure, &what)?;
        } else if !users.initialized() {
            anyhow::bail!(
                "tidb-server: {} holds no users. Fix: start once with --initialize-secure (a random \
                 root password is printed) or --initialize-insecure (tests only)",
                v.data_dir.display()
            );
        }
        tracing::info!(
            "accounts are kept in {} (this server only, --store=unistore); with --store=tikv they live in the cluster",
            users.path().display()
        );
        Arc::new(users)
    };
    let engine = tiox_sql::engine::Engine::open(store.txn())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "tidb-server: cannot load the schema from {}: {e}",
                store.describe()
            )
        })?;
    tracing::info!(
        "tables, indexes and transactions are stored in {}",
        store.describe()
    );
    let backend: Arc<dyn tiox_sql::Backend> = Arc::new(engine);
    let mysql_tls = v.mysql_tls.map(Arc::new);
    match &mysql_tls {
        Some(t) => tracing::info!(cert = %t.files().cert.display(), "TLS offered to MySQL clients"),
        None => tracing::warn!(
            "[security] ssl-cert/ssl-key are not set: MySQL clients can only connect in PLAINTEXT"
        ),
    }
    let settings = tiox_sql::Settings {
        port: config.port,
        require_secure_transport: config.security.require_secure_transport,
        max_allowed_packet: config.max_allowed_packet as usize,
        ssl_ca: config.security.ssl_ca.clone(),
        ssl_cert: config.security.ssl_cert.clone(),
        ssl_key: config.security.ssl_key.clone(),
        tls_version: v.tls_versions.clone(),
        hostname: std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        max_connections: config.max_server_connections,
        ..tiox_sql::Settings::default()
    };
    let shared = tiox_sql::Shared::new(users, mysql_tls, settings);
    if let Some(path) = &v.audit_log {
        shared.set_audit(Arc::new(
            tiox_security::audit::AuditLog::open(
                tiox_security::Component::TidbServer,
                "[security] audit-log",
                path,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
    }
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        anyhow::anyhow!(
            "tidb-server: cannot listen on {addr} (-P/--host): {e}. Fix: choose a free port"
        )
    })?;
    if config.status.report_status {
        let status_addr = format!(
            "{}:{}",
            config.status.status_host, config.status.status_port
        );
        let status_listener = tokio::net::TcpListener::bind(&status_addr)
            .await
            .map_err(|e| anyhow::anyhow!("tidb-server: cannot listen on {status_addr} (--status): {e}. Fix: choose a free port"))?;
        let tls = match v.cluster_tls {
            Some(settings) => Some(Arc::new(tiox_security::ServerTls::new(settings)?)),
            None => {
                tracing::warn!("[security] cluster-ssl-* are not set: the status port {status_addr} serves PLAINTEXT HTTP");
                None
            }
        };
        tracing::info!(addr = %status_addr, https = tls.is_some(), "status port");
        tokio::spawn(tiox_sql::status::serve(
            status_listener,
            tls,
            shared.clone(),
        ));
    }
    tracing::info!(addr = %addr, version = tiox_sql::server::VERSION, "MySQL protocol listening");
    tiox_sql::serve(listener, shared, backend).await;
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Statements run as nested futures (subqueries, CTEs, views inside
    // one another): worker threads get 16 MiB of stack, not tokio's 2 MiB,
    // so that a deeply nested statement cannot overflow it. Only touched
    // pages are resident.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidb-server: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
