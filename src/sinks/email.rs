//! The `email` sink: SMTP through lettre (tokio, rustls with ring; the only
//! module using lettre), STARTTLS or implicit TLS (plain only to a
//! loopback server, which the configuration enforces), optional
//! authentication, the system roots plus an optional `ca_file`.
//!
//! A permanent SMTP refusal (5xx: a rejected recipient or sender) is not
//! retried; connection problems and 4xx are.

use super::{DeliveryError, EmailSink, SmtpTls};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Parses a `Name <addr>` or bare address (configuration check).
pub fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|e| e.to_string())
}

impl EmailSender {
    pub fn new(spec: &EmailSink, timeout: Duration) -> Result<EmailSender, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = |host: &str| -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(path) = &spec.ca_file {
                let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| e.to_string())?);
            }
            b.build_rustls().map_err(|e| e.to_string())
        };
        let mode = match spec.tls {
            SmtpTls::StartTls => Tls::Required(tls(&spec.host)?),
            SmtpTls::Tls => Tls::Wrapper(tls(&spec.host)?),
            SmtpTls::None => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&spec.host)
            .port(spec.port)
            .tls(mode)
            .timeout(Some(timeout));
        if let (Some(u), Some(p)) = (&spec.username, &spec.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(EmailSender {
            transport: b.build(),
            from: mailbox(&spec.from)?,
            to: spec.to.iter().map(|t| mailbox(t)).collect::<Result<_, _>>()?,
        })
    }

    pub async fn send(&self, subject: &str, body: String) -> Result<(), DeliveryError> {
        let mut m = Message::builder().from(self.from.clone()).subject(subject);
        for t in &self.to {
            m = m.to(t.clone());
        }
        let msg = m
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Retry(e.to_string())),
        }
    }
}
