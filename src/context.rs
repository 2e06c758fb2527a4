//! The build context: the one place time and identity come from, so output is reproducible.

use uuid::Uuid;

/// Fixed default timestamp (2000-01-01T00:00:00Z) used when neither the spec nor
/// `SOURCE_DATE_EPOCH` gives one. Not 0: several formats store times relative to 2000 or
/// treat 0 as "unset".
pub const DEFAULT_EPOCH: u64 = 946_684_800;

/// Namespace of every UUID kiln derives (a v5 UUID of the DNS name `kiln.invalid`).
const KILN_NAMESPACE_NAME: &[u8] = b"kiln.invalid";

/// Time, identity and creator string for one build or command.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Seconds since the Unix epoch stamped into every artefact.
    pub epoch: u64,
    /// Seed for derived identifiers; the same seed gives the same UUIDs.
    pub id_seed: Uuid,
    /// Creator string written where formats record one.
    pub creator: String,
    /// When true, [`BuildContext::uuid`] returns random-looking ids derived from the seed
    /// and the current process instead of stable ones.
    pub random_ids: bool,
    /// The name the id seed was derived from; [`BuildContext::derive`] extends it.
    seed_name: String,
}

impl BuildContext {
    /// A context with `epoch` from `SOURCE_DATE_EPOCH` (else [`DEFAULT_EPOCH`]) and an id seed
    /// derived from `seed_name`.
    pub fn from_env(seed_name: &str) -> Self {
        let epoch = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_EPOCH);
        let namespace = Uuid::new_v5(&Uuid::NAMESPACE_DNS, KILN_NAMESPACE_NAME);
        Self {
            epoch,
            id_seed: Uuid::new_v5(&namespace, seed_name.as_bytes()),
            creator: format!("kiln {}", env!("CARGO_PKG_VERSION")),
            random_ids: false,
            seed_name: seed_name.to_string(),
        }
    }

    /// The context of a part of this one (an output, a disk of a package): the same time
    /// and creator, ids seeded from `SEED/part`, as `from_env("SEED/part")` would give
    /// without reading the environment again.
    pub fn derive(&self, part: &str) -> Self {
        let seed_name = format!("{}/{part}", self.seed_name);
        let namespace = Uuid::new_v5(&Uuid::NAMESPACE_DNS, KILN_NAMESPACE_NAME);
        Self {
            id_seed: Uuid::new_v5(&namespace, seed_name.as_bytes()),
            seed_name,
            ..self.clone()
        }
    }

    /// A stable UUID for `name` (e.g. `disks/root/vhdx/file-write`) under this context's seed.
    /// With `random_ids`, the process id and wall clock are mixed in so runs differ.
    pub fn uuid(&self, name: &str) -> Uuid {
        if !self.random_ids {
            return Uuid::new_v5(&self.id_seed, name.as_bytes());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let salted = format!("{name}/{}/{nanos}", std::process::id());
        Uuid::new_v5(&self.id_seed, salted.as_bytes())
    }
}

/// kiln's cache directory, `$XDG_CACHE_HOME/kiln` (else `~/.cache/kiln`): downloads
/// (`fetch`) and unpacked images (`unpack`) live below it.
pub fn cache_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kiln")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_context_has_the_ids_of_its_full_name() {
        let derived = BuildContext::from_env("app").derive("out").derive("root");
        let direct = BuildContext::from_env("app/out/root");
        assert_eq!(derived.uuid("a"), direct.uuid("a"));
    }

    #[test]
    fn same_seed_and_name_give_same_uuid() {
        let ctx = BuildContext::from_env("x");
        assert_eq!(ctx.uuid("a"), ctx.uuid("a"));
        assert_ne!(ctx.uuid("a"), ctx.uuid("b"));
    }
}
