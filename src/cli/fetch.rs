//! `kiln fetch SPEC` (fill the download cache), `kiln cache ls|prune`, and the progress bar
//! `kiln build` shows while sources download.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use kiln::fetch::{self, Cache, Event, cache::Kind};
use kiln::plan::Plan;
use kiln::size::HumanSize;

use super::KilnDiagnostic;
use super::build::ConfineArgs;
use super::progress::Progress;

#[derive(Debug, Args)]
pub(super) struct FetchArgs {
    /// The appliance spec (YAML).
    spec: PathBuf,
    #[command(flatten)]
    confine: ConfineArgs,
    /// Download nothing: check that every source (and its checksum and signature files)
    /// is in the cache, naming each one that is not.
    #[arg(long)]
    offline: bool,
    /// No progress lines on stderr.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub(super) struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the cache: verified images (by SHA-256), checksum and signature files (by URL)
    /// and unfinished downloads, with sizes and the URLs they came from.
    Ls,
    /// Remove cache entries: unfinished downloads (--partials), entries not used for a
    /// while (--older-than), or everything (--all).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Remove every entry.
    #[arg(long)]
    all: bool,
    /// Remove unfinished downloads (`*.partial`; resuming them is no longer possible).
    #[arg(long)]
    partials: bool,
    /// Remove entries last written more than this long ago: `30d`, `12h`, `90m`, `3600s`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    older_than: Option<Duration>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 30d, 12h, 90m"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h, d or w")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Draws one progress bar per download (on stdout, only when it is a terminal) and prints
/// log lines on stderr unless quiet.
pub(super) struct Observer {
    quiet: bool,
    bar: Option<Progress>,
}

impl Observer {
    pub(super) fn new(quiet: bool) -> Self {
        Self { quiet, bar: None }
    }

    pub(super) fn on(&mut self, e: Event<'_>) {
        match e {
            Event::Log(line) if !self.quiet => eprintln!("kiln: {line}"),
            Event::Log(_) => {}
            Event::Start { total, at, .. } => {
                let bar = Progress::new(total.unwrap_or(0));
                bar.set(at);
                self.bar = Some(bar);
            }
            Event::Progress(done) => {
                if let Some(bar) = &self.bar {
                    bar.set(done);
                }
            }
            Event::Finish => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
            }
        }
    }
}

/// Before `kiln build` writes anything: every source the selected outputs need, fetched
/// (checksum and signature files refreshed) or, with `offline`, found in the cache.
pub(super) fn for_build(plan: &Plan, offline: bool, quiet: bool) -> miette::Result<()> {
    let opts = fetch::Options {
        offline,
        reuse_files: false,
    };
    let mut obs = Observer::new(quiet);
    plan.fetch_sources(false, opts, &mut |e| obs.on(e))
        .map(|_| ())
        .map_err(wrap)
}

pub(super) fn fetch(args: &FetchArgs) -> miette::Result<()> {
    let spec = super::build::load(&args.spec, &args.confine.options())?;
    let opts = kiln::plan::BuildOptions {
        out_dir: PathBuf::from("."),
        only: Vec::new(),
        sign: None,
        report: false,
    };
    let plan = Plan::new(spec, &opts).map_err(wrap)?;
    let fetch_opts = fetch::Options {
        offline: args.offline,
        reuse_files: false,
    };
    let mut obs = Observer::new(args.quiet);
    let paths = plan
        .fetch_sources(true, fetch_opts, &mut |e| obs.on(e))
        .map_err(wrap)?;
    for (disk, path) in plan.spec.disks.iter().zip(paths) {
        if let Some(path) = path {
            println!("{}\t{}", disk.name, path.display());
        }
    }
    Ok(())
}

pub(super) fn cache(args: &CacheArgs) -> kiln::Result<()> {
    let cache = Cache::new(fetch::cache_dir());
    match &args.command {
        CacheCommand::Ls => {
            ls(&cache);
            Ok(())
        }
        CacheCommand::Prune(p) => prune(&cache, p),
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Image => "image",
        Kind::File => "file",
        Kind::Partial => "partial",
    }
}

fn ls(cache: &Cache) {
    let entries = cache.list();
    println!("# {} ({} entries)", cache.dir().display(), entries.len());
    let mut total = 0u64;
    for e in &entries {
        total = total.saturating_add(e.size);
        let name = e.path.strip_prefix(cache.dir()).unwrap_or(&e.path);
        let url = e.meta.urls.last().map_or("-", String::as_str);
        println!(
            "{}\t{}\t{}\t{url}",
            kind_name(e.kind),
            HumanSize(e.size),
            name.display()
        );
    }
    println!("# total {}", HumanSize(total));
}

fn prune(cache: &Cache, p: &PruneArgs) -> kiln::Result<()> {
    if !p.all && !p.partials && p.older_than.is_none() {
        return Err(kiln::Error::invalid_input(
            "cache prune needs --all, --partials or --older-than AGE",
        ));
    }
    let now = SystemTime::now();
    let old = |e: &fetch::cache::Entry| {
        p.older_than.is_some_and(|age| {
            e.modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d > age)
        })
    };
    let removed = cache.prune(|e| p.all || (p.partials && e.kind == Kind::Partial) || old(e))?;
    let bytes: u64 = removed.iter().map(|e| e.size).sum();
    for e in &removed {
        println!("removed {}", e.path.display());
    }
    eprintln!(
        "kiln: removed {} entries ({})",
        removed.len(),
        HumanSize(bytes)
    );
    Ok(())
}

fn wrap(e: kiln::Error) -> miette::Report {
    miette::Report::new(KilnDiagnostic(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_age("3y").is_err());
        assert!(parse_age("d").is_err());
    }
}
