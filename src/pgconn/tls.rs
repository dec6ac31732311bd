//! The one TLS policy of every Postgres connection replytime makes (admin, sink
//! and replication): a rustls client configuration per `sslmode`, with libpq's
//! meaning.
//!
//! | sslmode     | TLS                                  | chain checked       | host checked |
//! |-------------|--------------------------------------|---------------------|--------------|
//! | disable     | never                                |                     |              |
//! | allow       | only if the server refuses clear text| if a root file exists | no         |
//! | prefer      | if the server offers it (else clear) | if a root file exists | no         |
//! | require     | always                               | if a root file exists | no         |
//! | verify-ca   | always                               | always              | no           |
//! | verify-full | always                               | always              | name or IP   |
//!
//! "A root file" is `sslrootcert`, else libpq's `~/.postgresql/root.crt`; as in
//! libpq, `require` with a root file checks the chain (like verify-ca), and a
//! missing `~/.postgresql/root.crt` means "no check" below verify-ca and is an
//! error from verify-ca on. Unlike libpq, an `sslrootcert` (or `sslcert`) that the
//! URL names but that does not exist is an error in every TLS mode. `sslrootcert=system` is the operating system's
//! store as OpenSSL finds it (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), never
//! compiled-in roots, and only with verify-full (checked when the URL is parsed).
//! A client certificate (`sslcert`/`sslkey`, else `~/.postgresql/postgresql.crt`
//! and `.key` when they exist) is sent when the server asks for one. Which
//! attempts are made in clear or with TLS is the connecting code's part.
//! The crypto provider is aws-lc-rs, the one pgwire-replication already builds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::verify::{AcceptAnyCertificate, ChainOnly};
use super::{SslMode, TlsSettings};

/// The `sslrootcert` value that names the operating system's store.
pub(crate) const SYSTEM_ROOTS: &str = "system";

/// The connector of tokio-postgres for `settings`.
pub(super) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    Ok(MakeRustlsConnect::new(Arc::unwrap_or_clone(client_config(
        settings,
    )?)))
}

/// The rustls configuration for `settings` (see the module doc); the error says
/// what is wrong with the set-up, naming the file involved.
pub(crate) fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol setup: {e}"))?;
    let builder = match (settings.mode, trust_anchors(settings)?) {
        (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
        (_, Some(roots)) => {
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS verifier setup: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
        }
        (_, None) => {
            let verifier = AcceptAnyCertificate(provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    let config = match client_identity(settings)? {
        Some((chain, key, shown)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("sslcert/sslkey {shown}: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The roots the server's chain is checked against, `None` for "not checked".
fn trust_anchors(settings: &TlsSettings) -> Result<Option<RootCertStore>, String> {
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    if settings.root_cert.as_deref() == Some(Path::new(SYSTEM_ROOTS)) {
        return system_roots().map(Some);
    }
    let verifying = matches!(settings.mode, SslMode::VerifyCa | SslMode::VerifyFull);
    if let Some(named) = &settings.root_cert {
        // Unlike libpq (which then checks nothing below verify-ca): a CA file the
        // URL names and that is missing is a mistake to report, not a downgrade.
        if !named.exists() {
            return Err(format!(
                "sslrootcert {}: the root certificate file does not exist",
                named.display()
            ));
        }
        return read_roots(named).map(Some);
    }
    match libpq_default("root.crt") {
        Some(path) if path.exists() => read_roots(&path).map(Some),
        Some(path) if verifying => Err(format!(
            "root certificate file \"{}\" does not exist; provide it (sslrootcert=...), use \
             the system's trusted roots with sslrootcert=system, or use an sslmode that does \
             not verify the server certificate",
            path.display()
        )),
        None if verifying => Err(
            "no root certificate file (no sslrootcert and no home directory for \
             ~/.postgresql/root.crt); set sslrootcert"
                .to_string(),
        ),
        _ => Ok(None),
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert {shown}: no usable certificate in the file"
        ));
    }
    Ok(store)
}

/// The operating system's store, found as OpenSSL (and so libpq) finds it.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        return Err(format!(
            "sslrootcert=system: no usable certificate in the system's store \
             (SSL_CERT_FILE / SSL_CERT_DIR or the OpenSSL default paths){}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            }
        ));
    }
    Ok(store)
}

/// The client certificate chain and key, with the file names for messages.
type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

/// `sslcert`/`sslkey`, else libpq's default files when they exist. Unlike libpq,
/// an `sslcert` the URL names but that does not exist is an error, not "send no
/// certificate": a daemon should not quietly connect without its identity.
fn client_identity(settings: &TlsSettings) -> Result<Option<ClientIdentity>, String> {
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    let cert_path = match &settings.client_cert {
        Some(path) if !path.exists() => {
            return Err(format!(
                "sslcert {}: the certificate file does not exist",
                path.display()
            ));
        }
        Some(path) => path.clone(),
        None => match libpq_default("postgresql.crt").filter(|p| p.exists()) {
            Some(path) => path,
            None => return Ok(None),
        },
    };
    let key_path = settings
        .client_key
        .clone()
        .or_else(|| libpq_default("postgresql.key"))
        .unwrap_or_else(|| cert_path.with_extension("key"));
    let shown = format!("{} / {}", cert_path.display(), key_path.display());
    if !key_path.exists() {
        return Err(format!(
            "certificate present, but not private key file \"{}\" (sslkey)",
            key_path.display()
        ));
    }
    check_key_permissions(&key_path)?;
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("sslcert {}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert {}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "sslcert {}: no certificate in the file",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        format!(
            "sslkey {}: {e} (a PEM key: PKCS#8, PKCS#1 or SEC1, unencrypted)",
            key_path.display()
        )
    })?;
    Ok(Some((chain, key, shown)))
}

/// libpq's rule: a private key readable by others is refused (0600 or less when
/// owned by the user, 0640 or less when owned by root).
fn check_key_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("sslkey {}: {e}", path.display()))?;
    let mode = meta.mode() & 0o777;
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(format!(
            "sslkey {}: private key file has group or world access (mode {mode:04o}); it must \
             be u=rw (0600) or less, or u=rw,g=r (0640) or less if owned by root",
            path.display()
        ));
    }
    Ok(())
}

fn libpq_default(file: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql").join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: SslMode, root: Option<&str>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root.map(PathBuf::from),
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn a_named_root_file_must_exist_in_every_tls_mode() {
        for mode in [
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let err = client_config(&settings(mode, Some("/nonexistent/ca.pem"))).unwrap_err();
            assert!(
                err.contains("sslrootcert /nonexistent/ca.pem"),
                "{mode}: {err}"
            );
        }
        let disabled = settings(SslMode::Disable, Some("/nonexistent/ca.pem"));
        assert!(client_config(&disabled).is_ok());
    }

    #[test]
    fn a_named_client_certificate_must_exist() {
        let mut with_cert = settings(SslMode::Require, None);
        with_cert.client_cert = Some(PathBuf::from("/nonexistent/client.crt"));
        let err = client_config(&with_cert).unwrap_err();
        assert!(err.contains("sslcert /nonexistent/client.crt"), "{err}");
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, "not read").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_permissions(&key).unwrap_err();
        assert!(err.contains("group or world access"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_permissions(&key).unwrap();
    }
}
