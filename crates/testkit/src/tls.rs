//! Certificates made for one test with `rcgen`: a private CA, server
//! certificates it signs for a registry's names, and client certificates
//! for registries that require them.
//!
//! ```
//! use flux_testkit::tls::TestCa;
//! let ca = TestCa::new("team CA");
//! let server = ca.server_certificate(&["registry.test", "127.0.0.1"]);
//! assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(server.key_pem.contains("PRIVATE KEY"));
//! ```

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that exists only in this test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate with its private key, both PEM.
#[derive(Debug, Clone)]
pub struct KeyedCertificate {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS #8 private key.
    pub key_pem: String,
}

impl KeyedCertificate {
    /// Writes the certificate to `cert` and the key to `key`.
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).expect("write the certificate");
        std::fs::write(key, &self.key_pem).expect("write the key");
    }
}

impl TestCa {
    /// A new CA whose certificate's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .expect("no subject alternative names is valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("an ECDSA key can be generated");
        let certificate = params.self_signed(&key).expect("a CA can sign itself");
        TestCa {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("write the CA certificate");
    }

    /// A server certificate for these DNS names and IP addresses.
    pub fn server_certificate(&self, names: &[&str]) -> KeyedCertificate {
        self.issue(names, names[0], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `name`.
    pub fn client_certificate(&self, name: &str) -> KeyedCertificate {
        self.issue(&[], name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> KeyedCertificate {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid DNS names or IP addresses");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("an ECDSA key can be generated");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the certificate");
        KeyedCertificate {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
