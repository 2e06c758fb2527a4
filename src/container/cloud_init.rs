//! cloud-init through OVF environment properties: the ProductSection properties that
//! cloud-init's OVF datasource reads (`DataSourceOVF.read_ovf_environment`) when VMware hands
//! the guest its OVF environment (`guestinfo.ovfEnv`, the `com.vmware.guestInfo` transport).
//!
//! Keys, as that datasource reads them: `instance-id`, `hostname`, `public-keys` (one key per
//! line), `user-data` (base64) and `network-config` (base64 of a document whose `network`
//! key holds the config). meta-data is the seed's own (same `instance-id`); other meta-data
//! keys have no OVF property and are not carried.

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::seed::{self, SeedSpec};

/// One OVF property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// `ovf:key`.
    pub key: &'static str,
    /// `ovf:value`.
    pub value: String,
    /// `Label`, shown by deployment wizards.
    pub label: &'static str,
}

/// The properties that carry `spec` to cloud-init.
///
/// # Errors
/// Contents the seed module refuses, or YAML that cannot be re-encoded.
pub fn properties(spec: &SeedSpec) -> Result<Vec<Property>> {
    let meta = yaml_value("meta-data", &seed::render_meta_data(spec)?)?;
    let mut props = Vec::new();
    let mut push = |key, value: String, label| {
        props.push(Property { key, value, label });
    };
    if let Some(id) = meta.get("instance-id").and_then(scalar) {
        push("instance-id", id, "Instance id");
    }
    if let Some(host) = meta.get("local-hostname").and_then(scalar) {
        push("hostname", host, "Hostname");
    }
    match meta.get("public-keys") {
        Some(Value::Array(keys)) => {
            let keys: Vec<String> = keys.iter().filter_map(scalar).collect();
            push("public-keys", keys.join("\n"), "SSH public keys");
        }
        Some(other) => {
            if let Some(key) = scalar(other) {
                push("public-keys", key, "SSH public keys");
            }
        }
        None => {}
    }
    if !spec.user_data.is_empty() {
        seed::check_user_data("user-data", &spec.user_data)?;
        push(
            "user-data",
            base64(&spec.user_data),
            "cloud-init user-data (base64)",
        );
    }
    if let Some(net) = &spec.network_config {
        seed::check_network_config(net)?;
        let wrapped = serde_json::json!({ "network": yaml_value("network-config", net)? });
        push(
            "network-config",
            base64(wrapped.to_string().as_bytes()),
            "cloud-init network-config (base64)",
        );
    }
    Ok(props)
}

fn yaml_value(file: &str, bytes: &[u8]) -> Result<Value> {
    serde_saphyr::from_slice::<Value>(bytes).map_err(|e| {
        let message = format!(
            "{file}: cannot re-encode as an OVF property: {}",
            e.without_snippet()
        );
        Error::new(ErrorKind::InvalidInput, message)
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Standard base64 (RFC 4648 §4) with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn seed_keys_become_datasource_properties() {
        let spec = SeedSpec {
            user_data: b"#cloud-config\n".to_vec(),
            meta_data: Some(b"instance-id: i-9\n".to_vec()),
            hostname: Some("web".into()),
            ssh_keys: vec!["ssh-ed25519 AAAA a".into(), "ssh-rsa BBBB b".into()],
            ..SeedSpec::default()
        };
        let props = properties(&spec).unwrap();
        let get = |k: &str| props.iter().find(|p| p.key == k).map(|p| p.value.clone());
        assert_eq!(get("instance-id").as_deref(), Some("i-9"));
        assert_eq!(get("hostname").as_deref(), Some("web"));
        assert_eq!(
            get("public-keys").as_deref(),
            Some("ssh-ed25519 AAAA a\nssh-rsa BBBB b")
        );
        assert_eq!(get("user-data").as_deref(), Some("I2Nsb3VkLWNvbmZpZwo="));
    }
}
