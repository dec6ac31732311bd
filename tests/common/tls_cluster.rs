//! Clusters for the TLS tests, each with its own CA, a server certificate for the
//! names the test chooses, a client certificate, and a `pg_hba.conf` of one of
//! three kinds: TLS optional, `hostssl` only, or `hostssl` with a client
//! certificate required; or no TLS at all. Logins over TCP need the SCRAM password
//! of `TLS_USER`; the superuser connects over the Unix socket.
//!
//! ```text
//!  start_tls_cluster(spec) ─▶ openssl: ca, other-ca, server (spec.server_names),
//!                             client (CN = TLS_USER) ─▶ cluster as `start_cluster_with`
//!                             ─▶ pg_hba.conf replaced ─▶ CREATE ROLE TLS_USER
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{
    TestCluster, append, cluster_base, initdb_template, pg_bindir, run, server_command,
    spawn_watchdog, start_server, write_config,
};

/// The role of the TLS tests: LOGIN, REPLICATION, SCRAM password `TLS_PASSWORD`.
pub const TLS_USER: &str = "rt_tls";
pub const TLS_PASSWORD: &str = "tls-pw";

/// Which connections the server accepts over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hba {
    /// `host`: with or without TLS.
    Any,
    /// `hostssl` only: a connection in clear text is refused.
    HostsslOnly,
    /// `hostssl ... clientcert=verify-full`: TLS and a client certificate whose CN
    /// is the user.
    ClientCert,
}

pub struct TlsClusterSpec {
    /// `ssl = on` (else the server answers `N` to every SSLRequest).
    pub ssl: bool,
    pub hba: Hba,
    /// The server certificate's subjectAltName, e.g. `DNS:localhost`.
    pub server_names: &'static str,
}

pub struct TlsCluster {
    pub cluster: TestCluster,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing of this cluster.
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    /// Owned by this process's user, mode 0600 (libpq refuses looser keys).
    pub client_key: PathBuf,
}

impl TlsCluster {
    /// The superuser over the Unix socket (trust), for checks.
    pub fn superuser_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.cluster.dir.display(),
            self.cluster.port
        )
    }
}

/// Starts a cluster as `spec` says; stopped and removed like every harness cluster
/// once this process is gone.
pub fn start_tls_cluster(spec: &TlsClusterSpec) -> TlsCluster {
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let dir = tempfile::Builder::new()
        .prefix("replytime-pg-tls-")
        .tempdir_in(cluster_base())
        .expect("create the cluster tempdir")
        .keep();
    let data_dir = dir.join("data");
    let bindir = pg_bindir();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("create the tls dir");
    make_ca(&tls, "ca", "replytime test CA");
    make_ca(&tls, "other", "other CA");
    make_signed(
        &tls,
        "server",
        // Not a host name: only the subjectAltName can match.
        "replytime test server",
        &format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
            spec.server_names
        ),
    );
    if as_root {
        run(
            Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
            "chown the cluster dir",
        );
    }
    // The client's files stay this process's own (libpq checks the key's owner).
    let client = dir.join("client");
    std::fs::create_dir_all(&client).expect("create the client dir");
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(tls.join(file), client.join(file)).expect("copy the CA");
    }
    make_signed(&client, "client", TLS_USER, "extendedKeyUsage=clientAuth\n");
    std::fs::remove_file(client.join("ca.key")).expect("remove the CA key copy");

    let pg = |tool: &str| server_command(&bindir.join(tool), as_root);
    let template = initdb_template(&bindir, as_root, &pg);
    run(
        Command::new("cp").arg("-a").arg(&template).arg(&data_dir),
        "copy the initdb template",
    );
    write_config(&dir, &data_dir, spec.ssl);
    if spec.hba == Hba::ClientCert {
        append(
            &data_dir.join("postgresql.conf"),
            &format!("ssl_ca_file = '{}'\n", tls.join("ca.crt").display()),
        );
    }
    let rule = match spec.hba {
        Hba::Any => "host all all 127.0.0.1/32 scram-sha-256",
        Hba::HostsslOnly => "hostssl all all 127.0.0.1/32 scram-sha-256",
        Hba::ClientCert => "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full",
    };
    std::fs::write(
        data_dir.join("pg_hba.conf"),
        format!("local all all trust\n{rule}\n"),
    )
    .expect("write pg_hba.conf");
    let port = start_server(&dir, &data_dir, &pg);
    spawn_watchdog(&dir, &data_dir, &pg("pg_ctl"));
    run(
        Command::new(bindir.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&dir)
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "CREATE ROLE {TLS_USER} LOGIN REPLICATION PASSWORD '{TLS_PASSWORD}'"
            )),
        "create the TLS test role",
    );
    TlsCluster {
        cluster: TestCluster {
            port,
            dir,
            data_dir,
            bindir,
            tls: None,
        },
        ca: client.join("ca.crt"),
        other_ca: tls.join("other.crt"),
        client_cert: client.join("client.crt"),
        client_key: client.join("client.key"),
    }
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// `<name>.crt` / `<name>.key`: a self-signed CA.
fn make_ca(dir: &Path, name: &str, subject: &str) {
    let mut args = vec!["req", "-x509", "-days", "3650"];
    let subject = format!("/CN={subject}");
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    args.extend(["-subj", &subject]);
    args.extend(EC_KEY);
    args.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &key,
        "-out",
        &crt,
    ]);
    openssl(dir, &args);
}

/// `<name>.crt` / `<name>.key` signed by `ca.crt` in `dir`, with `extensions`.
fn make_signed(dir: &Path, name: &str, common_name: &str, extensions: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n{extensions}"),
    )
    .expect("write the extensions file");
    let subject = format!("/CN={common_name}");
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let mut request = vec!["req", "-subj", &subject];
    request.extend(EC_KEY);
    request.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &request);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600))
        .expect("chmod the key");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (the TLS tests need it)");
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
