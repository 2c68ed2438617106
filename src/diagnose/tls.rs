//! Runbook "SSL/TLS Certificate Issues": the certificate each public endpoint serves
//! (`openssl s_client … | openssl x509 -noout -dates`), with days to expiry, whether it is
//! valid for the endpoint's host name, and whether it is self-signed.
//!
//! The handshake accepts any certificate on purpose: an expired or mismatched certificate
//! is exactly what this check must be able to read. Nothing is sent over the connection
//! after the handshake.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::TlsEndpoint;

use super::{Check, Finding, Status, Subject};

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Start of its validity.
    pub not_before: DateTime<Utc>,
    /// End of its validity.
    pub not_after: DateTime<Utc>,
    /// DNS names it is valid for (subjectAltName).
    pub dns_names: Vec<String>,
    /// Whether it is valid for the expected host name.
    pub matches_name: bool,
    /// Whether its issuer is its subject.
    pub self_signed: bool,
}

/// Fetches the certificate `endpoint` serves and reads it.
///
/// # Errors
/// A line saying why: the connection, the handshake, or an unreadable certificate.
pub async fn inspect_certificate(
    endpoint: &TlsEndpoint,
    limit: Duration,
) -> Result<CertificateFacts, String> {
    let server_name = ServerName::try_from(endpoint.name.clone())
        .map_err(|_| format!("\"{}\" is not a usable server name", endpoint.name))?;
    let certificate = tokio::time::timeout(limit, fetch_certificate(endpoint, &server_name))
        .await
        .map_err(|_| format!("no TLS handshake within {} s", limit.as_secs()))??;
    read_certificate(&certificate, &server_name)
}

/// The certificate of every configured endpoint against the thresholds.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let settings = &subject.environment.diagnose;
    if settings.tls.is_empty() {
        return Finding::ok(
            Check::Tls,
            "no public TLS endpoints configured (diagnose.tls)",
        );
    }
    let limit = subject.command_limit();
    let inspected = join_all(
        settings
            .tls
            .iter()
            .map(|endpoint| inspect_certificate(endpoint, limit)),
    )
    .await;
    let mut evidence = Vec::new();
    let mut problems: Vec<(Status, String)> = Vec::new();
    for (endpoint, facts) in settings.tls.iter().zip(inspected) {
        let label = if endpoint.connect.starts_with(&format!("{}:", endpoint.name)) {
            endpoint.connect.clone()
        } else {
            format!("{} ({})", endpoint.connect, endpoint.name)
        };
        match facts {
            Err(reason) => {
                evidence.push(format!("{label}: {reason}"));
                problems.push((Status::Fail, format!("{label}: {reason}")));
            }
            Ok(facts) => {
                evidence.push(format!("{label}: {}", describe(&facts, subject.now)));
                problems.extend(
                    verdicts(&facts, endpoint, subject)
                        .into_iter()
                        .map(|(status, reason)| (status, format!("{label}: {reason}"))),
                );
            }
        }
    }
    problems.sort_by_key(|(status, _)| *status);
    let finding = match problems.first() {
        None => Finding::ok(
            Check::Tls,
            format!(
                "{} certificate(s) valid for more than {} days",
                settings.tls.len(),
                settings.tls_warn_days
            ),
        ),
        Some((status, _)) => {
            let reasons: Vec<&str> = problems.iter().map(|(_, reason)| reason.as_str()).collect();
            Finding::new(Check::Tls, *status, reasons.join("; "))
                .with_fix(Some(format!("/rotate ssl {}", subject.env())))
        }
    };
    finding.with_evidence(evidence)
}

fn verdicts(
    facts: &CertificateFacts,
    endpoint: &TlsEndpoint,
    subject: &Subject<'_>,
) -> Vec<(Status, String)> {
    let settings = &subject.environment.diagnose;
    let mut found = Vec::new();
    let days = days_left(facts, subject.now);
    if facts.not_after <= subject.now {
        found.push((
            Status::Fail,
            format!("certificate expired {}", facts.not_after.format("%Y-%m-%d")),
        ));
    } else if days <= i64::from(settings.tls_fail_days) {
        found.push((Status::Fail, format!("certificate expires in {days} days")));
    } else if days <= i64::from(settings.tls_warn_days) {
        found.push((Status::Warn, format!("certificate expires in {days} days")));
    }
    if facts.not_before > subject.now {
        found.push((
            Status::Fail,
            format!(
                "certificate not valid before {}",
                facts.not_before.format("%Y-%m-%d %H:%M UTC")
            ),
        ));
    }
    if !facts.matches_name {
        found.push((
            Status::Fail,
            format!("certificate is not valid for {}", endpoint.name),
        ));
    }
    if facts.self_signed {
        found.push((Status::Warn, "self-signed certificate".to_string()));
    }
    found
}

fn days_left(facts: &CertificateFacts, now: DateTime<Utc>) -> i64 {
    (facts.not_after - now).num_days()
}

/// `expires 2026-12-28 (30 days), names: localhost, self-signed`.
fn describe(facts: &CertificateFacts, now: DateTime<Utc>) -> String {
    let names = if facts.dns_names.is_empty() {
        "none (no subjectAltName)".to_string()
    } else {
        facts.dns_names.join(", ")
    };
    let mut text = format!(
        "expires {} ({} days), names: {names}",
        facts.not_after.format("%Y-%m-%d %H:%M UTC"),
        days_left(facts, now)
    );
    if facts.self_signed {
        text.push_str(", self-signed");
    }
    text
}

async fn fetch_certificate(
    endpoint: &TlsEndpoint,
    server_name: &ServerName<'static>,
) -> Result<CertificateDer<'static>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup failed: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadAnyCertificate(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&endpoint.connect)
        .await
        .map_err(|error| format!("cannot connect: {}", lower_reason(&error)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector
        .connect(server_name.clone(), tcp)
        .await
        .map_err(|error| format!("TLS handshake failed: {}", lower_reason(&error)))?;
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.clone().into_owned())
        .ok_or_else(|| "the server sent no certificate".to_string())
}

/// Reads validity, names and issuer of a DER certificate.
fn read_certificate(
    certificate: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
) -> Result<CertificateFacts, String> {
    let (not_before, not_after) = validity(certificate.as_ref())
        .map_err(|error| format!("unreadable certificate: {error}"))?;
    let end_entity = webpki::EndEntityCert::try_from(certificate)
        .map_err(|error| format!("unreadable certificate: {error}"))?;
    Ok(CertificateFacts {
        not_before,
        not_after,
        dns_names: end_entity.valid_dns_names().map(str::to_string).collect(),
        matches_name: end_entity
            .verify_is_valid_for_subject_name(server_name)
            .is_ok(),
        self_signed: end_entity.issuer() == end_entity.subject(),
    })
}

/// `notBefore` and `notAfter` of an X.509 certificate (RFC 5280 §4.1): the fifth field
/// of `tbsCertificate`, after the optional version, serial, signature algorithm and issuer.
fn validity(certificate: &[u8]) -> der::Result<(DateTime<Utc>, DateTime<Utc>)> {
    use der::{Reader, Tag, TagNumber};
    let mut reader = der::SliceReader::new(certificate)?;
    reader.sequence(|certificate| {
        let validity = certificate.sequence(|tbs| {
            let version = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N0,
            };
            if tbs.peek_tag()? == version {
                tbs.tlv_bytes()?;
            }
            for _serial_algorithm_issuer in 0..3 {
                tbs.tlv_bytes()?;
            }
            let validity = tbs.sequence(|times| Ok((read_time(times)?, read_time(times)?)))?;
            skip_rest(tbs)?;
            Ok(validity)
        })?;
        skip_rest(certificate)?;
        Ok(validity)
    })
}

fn read_time<'a, R: der::Reader<'a>>(reader: &mut R) -> der::Result<DateTime<Utc>> {
    use der::Decode;
    let since_epoch = match reader.peek_tag()? {
        der::Tag::UtcTime => der::asn1::UtcTime::decode(reader)?.to_unix_duration(),
        _ => der::asn1::GeneralizedTime::decode(reader)?.to_unix_duration(),
    };
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| der::Tag::GeneralizedTime.value_error())
}

fn skip_rest<'a, R: der::Reader<'a>>(reader: &mut R) -> der::Result<()> {
    let rest = reader.remaining_len();
    reader.read_slice(rest)?;
    Ok(())
}

/// `connection refused`, without `(os error 111)`.
fn lower_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => "no reason given".to_string(),
    }
}

/// Accepts whatever certificate the server presents (the check judges it afterwards)
/// while still checking that the server holds its key.
#[derive(Debug)]
struct ReadAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for ReadAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_and_names_are_read_from_a_generated_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["api.example.com".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2026, 11, 1);
        params.not_after = rcgen::date_time_ymd(2026, 12, 1);
        let key = rcgen::KeyPair::generate().expect("a key");
        let certificate = params.self_signed(&key).expect("a certificate");
        let name = ServerName::try_from("api.example.com").expect("a name");
        let facts = read_certificate(certificate.der(), &name).expect("readable");
        assert_eq!(facts.not_before.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(facts.not_after.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(facts.dns_names, ["api.example.com"]);
        assert!(facts.matches_name);
        assert!(facts.self_signed);
        let other = ServerName::try_from("www.example.com").expect("a name");
        assert!(
            !read_certificate(certificate.der(), &other)
                .expect("readable")
                .matches_name
        );
        assert!(read_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]), &name).is_err());
    }
}
