//! The bridge's connection to the broker: the broker URL (`mqtt://` or `mqtts://`), the TLS
//! settings, and the byte stream the MQTT session runs on (plain TCP, or TLS by rustls driven
//! on the same non-blocking socket of the node's mio loop: no thread, no async runtime).
//!
//! With TLS, [`BrokerStream`] is still read and written as a plain byte stream: the session's
//! CONNECT may be written before the handshake completes (rustls keeps it and sends it
//! encrypted once the handshake is done), and the TLS records that could not be written at
//! once wait in rustls until the socket takes them ([`BrokerStream::push_pending`]).
//!
//! A TLS failure that retrying cannot mend (the broker's certificate is not signed by the CA
//! given, is not for the host name, has expired; the broker refused the client certificate)
//! is told apart from a lost connection ([`fatal_tls`]): the bridge stops with a message that
//! says what to change instead of retrying forever.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore};

use super::BridgeError;

/// The CA bundle used when `mqtts://` is given without a CA file (Debian's, from the
/// `ca-certificates` package).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A parsed broker URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The addresses the host resolves to (with the port).
    pub addrs: Vec<SocketAddr>,
    /// The host as written (without brackets for IPv6): the name the broker's certificate
    /// must hold under TLS.
    pub host: String,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

/// Parses `mqtt://HOST[:PORT]` (port 1883 by default) or `mqtts://HOST[:PORT]` (TLS, port
/// 8883 by default). HOST may be a name, an IPv4 address or a bracketed IPv6 address.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, BridgeError> {
    let bad = |problem: &str| BridgeError::BadUrl {
        url: url.into(),
        problem: problem.into(),
    };
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(bad("only mqtt:// and mqtts:// (TLS) are supported"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad("expected a host and an optional port only"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address without its closing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
            None if after.is_empty() => default_port,
            None => return Err(bad("expected ':PORT' after the IPv6 address")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            None => (rest.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("it does not resolve: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("it resolves to no address"));
    }
    Ok(BrokerUrl { addrs, host, tls })
}

/// Where the TLS settings come from (the bridge's `--ca-file`, `--cert-file`, `--key-file`,
/// `--tls-server-name`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// PEM file with the CA certificate(s) the broker's certificate must chain to (default:
    /// [`SYSTEM_CA_BUNDLE`]).
    pub ca_file: Option<PathBuf>,
    /// PEM file with this node's certificate (chain), for brokers that require one.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the broker's certificate must hold (default: the URL's host).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// Whether any TLS setting was given.
    pub fn any(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
    }
}

/// Ready TLS client settings for one broker.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// The CA file, for error messages.
    ca: String,
    client_cert: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

fn tls_error(problem: String) -> BridgeError {
    BridgeError::Tls { problem }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, BridgeError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(format!("cannot read the {what} file {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("the {what} file {shown} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "the {what} file {shown} holds no certificate (expected PEM '-----BEGIN CERTIFICATE-----')"
        )));
    }
    Ok(certs)
}

impl TlsConfig {
    /// Loads the CA, and the client certificate and key when given, for a broker reached as
    /// `host` (the URL's host; `files.server_name` overrides it). Every problem names the
    /// file and what is wrong with it.
    pub fn load(files: &TlsFiles, host: &str) -> Result<TlsConfig, BridgeError> {
        let ca_path = files
            .ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
        if files.ca_file.is_none() && !ca_path.exists() {
            return Err(tls_error(format!(
                "no CA to check the broker's certificate with: pass --ca-file (the system bundle {SYSTEM_CA_BUNDLE} is missing)"
            )));
        }
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&ca_path, "CA")? {
            roots.add(cert).map_err(|e| {
                tls_error(format!(
                    "the CA file {} holds a certificate rustls refuses: {e}",
                    ca_path.display()
                ))
            })?;
        }
        // ring rather than aws-lc (which needs cmake to build), as the gRPC gateway; rustls
        // deprecates it for lacking post-quantum key exchange, which brokers do not offer yet.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(format!("no TLS protocol version available: {e}")))?
            .with_root_certificates(roots);
        let config = match (&files.cert_file, &files.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    tls_error(format!(
                        "cannot read a private key (PEM) from the key file {}: {e}",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    tls_error(format!(
                        "the client certificate {} and key {} do not go together: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            _ => {
                return Err(tls_error(
                    "a client certificate needs both --cert-file and --key-file".into(),
                ))
            }
        };
        let name = files.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
            tls_error(format!(
                "'{name}' is neither a DNS name nor an IP address to check the broker's certificate against"
            ))
        })?;
        Ok(TlsConfig {
            config: Arc::new(config),
            server_name,
            ca: ca_path.display().to_string(),
            client_cert: files.cert_file.is_some(),
        })
    }

    /// What a TLS failure means for the user, when retrying cannot mend it (`None`: treat
    /// it as a lost connection).
    fn explain(&self, e: &rustls::Error) -> Option<String> {
        let name = match &self.server_name {
            ServerName::DnsName(d) => d.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => "the broker".into(),
        };
        let ca = &self.ca;
        Some(match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the broker's certificate is not signed by a CA in {ca} (unknown issuer): pass the CA that signed it with --ca-file"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the broker's certificate is not valid for '{name}': connect by a name or address it holds, or set --tls-server-name"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "the broker's certificate has expired".into(),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "the broker's certificate is not valid yet (check this host's clock)".into(),
            rustls::Error::InvalidCertificate(other) => {
                format!("the broker's certificate was refused: {other}")
            }
            rustls::Error::AlertReceived(
                alert @ (AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::AccessDenied
                | AlertDescription::HandshakeFailure
                | AlertDescription::UnsupportedCertificate),
            ) => {
                let what = if self.client_cert {
                    "it refused this node's client certificate (--cert-file, --key-file): is it signed by a CA the broker trusts?"
                } else {
                    "it may require a client certificate: pass --cert-file and --key-file"
                };
                format!("the broker ended the TLS handshake ({alert:?}): {what}")
            }
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
            | rustls::Error::PeerIncompatible(_) => {
                format!("the broker's TLS is incompatible with this client: {e}")
            }
            _ => return None,
        })
    }
}

/// The TLS error inside an I/O error from [`BrokerStream`].
#[derive(Debug)]
struct TlsFailure(rustls::Error);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// When `e` (from reading a [`BrokerStream`] made with `tls`) is a TLS failure that
/// retrying cannot mend, what the user must change.
pub fn fatal_tls(tls: Option<&TlsConfig>, e: &io::Error) -> Option<String> {
    let failure = e.get_ref()?.downcast_ref::<TlsFailure>()?;
    tls?.explain(&failure.0)
}

/// The connection to the broker: TCP, or TLS over it.
pub struct BrokerStream {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl BrokerStream {
    /// A stream over the connected `tcp`, with TLS when `tls` is given (the handshake
    /// starts with the first write or read).
    pub fn new(tcp: TcpStream, tls: Option<&TlsConfig>) -> Result<BrokerStream, BridgeError> {
        let tls = match tls {
            Some(t) => Some(Box::new(
                ClientConnection::new(t.config.clone(), t.server_name.clone())
                    .map_err(|e| tls_error(format!("cannot start a TLS session: {e}")))?,
            )),
            None => None,
        };
        Ok(BrokerStream { tcp, tls })
    }

    /// The socket (to register it in, or remove it from, the loop).
    pub fn tcp(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Whether TLS records wait for room in the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|c| c.wants_write())
    }

    /// Writes the waiting TLS records until the socket would block.
    pub fn push_pending(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(conn) => write_records(conn, &mut self.tcp),
            None => Ok(()),
        }
    }
}

fn write_records(conn: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Read for BrokerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let BrokerStream { tcp, tls } = self;
        let Some(conn) = tls.as_mut() else {
            return tcp.read(buf);
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match conn.read_tls(tcp) {
                Ok(0) if conn.is_handshaking() => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the broker closed the connection during the TLS handshake (is its port a TLS listener?)",
                    ))
                }
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            let processed = conn.process_new_packets();
            // The handshake's answers, or the alert that tells the broker why we stop.
            let written = write_records(conn, tcp);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, TlsFailure(e)));
            }
            written?;
        }
    }
}

impl Write for BrokerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let BrokerStream { tcp, tls } = self;
        let Some(conn) = tls.as_mut() else {
            return tcp.write(buf);
        };
        // Before the handshake completes rustls keeps the bytes, and sends them once it has.
        let n = conn.writer().write(buf)?;
        write_records(conn, tcp)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_scheme_host_and_default_port() {
        let u = parse_broker_url("mqtt://127.0.0.1").unwrap();
        assert_eq!(u.addrs, vec!["127.0.0.1:1883".parse().unwrap()]);
        assert!(!u.tls);
        let u = parse_broker_url("mqtts://127.0.0.1/").unwrap();
        assert_eq!(u.addrs, vec!["127.0.0.1:8883".parse().unwrap()]);
        assert_eq!(u.host, "127.0.0.1");
        assert!(u.tls);
        let u = parse_broker_url("mqtts://[::1]:9000").unwrap();
        assert_eq!(u.addrs, vec!["[::1]:9000".parse().unwrap()]);
        assert_eq!(u.host, "::1");
        for bad in [
            "http://x:1",
            "mqtt://",
            "mqtt://a/b",
            "mqtt://u@h",
            "mqtt://h:port",
            "mqtts://[::1",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_settings_name_the_file_that_is_wrong() {
        let dir = std::env::temp_dir().join(format!("istr-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles {
            ca_file: Some(empty.clone()),
            ..TlsFiles::default()
        };
        let e = TlsConfig::load(&files, "localhost")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let files = TlsFiles {
            ca_file: Some(dir.join("missing.pem")),
            ..TlsFiles::default()
        };
        let e = TlsConfig::load(&files, "localhost")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read the CA file") && e.contains("missing.pem"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
